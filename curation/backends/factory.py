"""Backends from config: each role's Hydra node (`_target_` + settings) becomes one backend."""

from __future__ import annotations

import sys
from typing import Iterable

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from curation.backends.base import Backend, BackendUnavailable
from curation.backends.memory_plan import plan_for, vllm_role


def build_backend(role: str, node: DictConfig) -> Backend:
    """Instantiate one backend; a failure becomes one sentence naming the role and the cause."""
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as exc:
        cause = exc.__cause__
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, BackendUnavailable):
            raise cause from None
        raise BackendUnavailable(f"could not build the {role} backend {node.get('_target_')}: "
                                 f"{type(cause or exc).__name__}: {cause or exc}") from exc


def build_backends(cfg: DictConfig, roles: Iterable[str], gpu_total_gb: float | None = None) -> dict[str, Backend]:
    """One backend per role the plan calls, from the config group of that name.

    First, before any is built (so before any model loads), the GPU memory plan when several
    in-process models share the GPU (curation/backends/memory_plan.py): it refuses a combination
    that cannot fit, with one sentence, and sets vLLM's share of the GPU in `cfg` (so the manifest
    records the share used). `gpu_total_gb` stands in for the device's memory in tests.
    """
    roles = sorted(set(roles))
    plan = plan_for(cfg, roles, cfg.get("gpu_memory") or {}, gpu_total_gb)
    if plan is not None:
        role = vllm_role(plan)
        if role is not None:
            cfg[role].engine.gpu_memory_utilization = plan.vllm_share
        print(plan.describe(), file=sys.stderr)
    backends = {}
    for role in roles:
        node = cfg.get(role)
        if node is None or "_target_" not in node:
            raise BackendUnavailable(f"the plan needs a {role} backend but `{role}=` selects none")
        backends[role] = build_backend(role, node)
    return backends
