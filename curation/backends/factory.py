"""Backends from config: each role's Hydra node (`_target_` + settings) becomes one backend."""

from __future__ import annotations

import sys
from typing import Mapping

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


def selected(node) -> bool:
    """Whether a role's config node selects a backend (`checker=none` is `{}`: it selects none)."""
    return isinstance(node, DictConfig) and "_target_" in node


def configured_roles(cfg: DictConfig) -> set[str]:
    """The roles whose config group selects a backend."""
    return {str(role) for role in cfg if selected(cfg.get(role))}


def build_backends(cfg: DictConfig, roles: Mapping[str, str | None],
                   gpu_total_gb: float | None = None) -> dict[str, Backend]:
    """One backend per role the plan calls, from the config group of that name.

    `roles` maps each role to a fallback: a role whose group selects no backend shares the backend
    of its fallback role (a judge asks the teacher unless `+teacher@judge=...` selects another):
    the same object, so one model is loaded once and its concurrency limit is shared.

    First, before any is built (so before any model loads), the GPU memory plan when several
    in-process models share the GPU (curation/backends/memory_plan.py): it refuses a combination
    that cannot fit, with one sentence, and sets vLLM's share of the GPU in `cfg` (so the manifest
    records the share used). Only roles that select their own backend hold a model; a fallback
    shares one. `gpu_total_gb` stands in for the device's memory in tests."""
    plan = plan_for(cfg, [r for r in roles if selected(cfg.get(r))], cfg.get("gpu_memory") or {}, gpu_total_gb)
    if plan is not None:
        role = vllm_role(plan)
        if role is not None:
            cfg[role].engine.gpu_memory_utilization = plan.vllm_share
        print(plan.describe(), file=sys.stderr)
    backends: dict[str, Backend] = {}

    def build(role: str, fallback: str | None) -> Backend:
        if role in backends:
            return backends[role]
        node = cfg.get(role)
        if selected(node):
            backends[role] = build_backend(role, node)
        elif fallback is not None:
            backends[role] = build(fallback, roles.get(fallback))
        else:
            raise BackendUnavailable(f"the plan needs a {role} backend but `{role}=` selects none")
        return backends[role]

    for role in sorted(roles):
        build(role, roles[role])
    return backends


def distinct(backends: Mapping[str, Backend], roles: Mapping[str, str | None]) -> dict[str, Backend]:
    """Each backend object once, under the role it was built for (not one that falls back to it): to
    check, close and account for each once."""
    owner: dict[int, str] = {}
    for role in sorted(backends, key=lambda r: (roles.get(r) is not None, r)):
        owner.setdefault(id(backends[role]), role)
    return {role: backends[role] for role in sorted(owner.values())}
