"""Backends from config: each role's Hydra node (`_target_` + settings) becomes one backend."""

from __future__ import annotations

from typing import Iterable

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from curation.backends.base import Backend, BackendUnavailable


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


def build_backends(cfg: DictConfig, roles: Iterable[str]) -> dict[str, Backend]:
    """One backend per role the plan calls, from the config group of that name."""
    backends = {}
    for role in sorted(set(roles)):
        node = cfg.get(role)
        if node is None or "_target_" not in node:
            raise BackendUnavailable(f"the plan needs a {role} backend but `{role}=` selects none")
        backends[role] = build_backend(role, node)
    return backends
