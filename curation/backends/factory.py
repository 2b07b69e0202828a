"""Backends from config: each role's Hydra node (`_target_` + settings) becomes one backend."""

from __future__ import annotations

from typing import Iterable, Mapping

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


def selected(node) -> bool:
    """Whether a role's config node selects a backend (`checker=none` is `{}`: it selects none)."""
    return isinstance(node, DictConfig) and "_target_" in node


def configured_roles(cfg: DictConfig) -> set[str]:
    """The roles whose config group selects a backend."""
    return {str(role) for role in cfg if selected(cfg.get(role))}


def build_backends(cfg: DictConfig, roles: Mapping[str, str | None]) -> dict[str, Backend]:
    """One backend per role the plan calls, from the config group of that name.

    `roles` maps each role to a fallback: a role whose group selects no backend shares the backend
    of its fallback role (a judge asks the teacher unless `+teacher@judge=...` selects another):
    the same object, so one model is loaded once and its concurrency limit is shared."""
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
