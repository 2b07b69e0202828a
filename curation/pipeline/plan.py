"""Recipe → modes → the stages they need, in an order that follows what each needs and makes.

Stages are derived, not listed by hand: each mode's schema names the fields its rows are made
from, and each registered stage declares what it needs and makes. A recipe therefore runs exactly
what its modes need, and `all` runs each shared stage once for every mode that uses it.

Optional stages (`Stage.optional`: the quality checks, the checker's report, a judge) are in a plan
while `stages.<name>.enabled` is true and the backend role they call is configured. Each then
serves every mode whose stages make all it needs (other optional stages included: a check joins
with the scoring stage it reads). Report-only stages serve no mode: their rejects reject no row.

The order is topological over needs and makes. Among stages that are ready at the same point,
checks and what they need come first (a sample a check rejects costs no later model call), then
the stages more modes use, then those more stages depend on, then by name: the same registry
always gives the same plan.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Collection, Mapping

from curation.core import schema
from curation.pipeline.stages import BasePlanForImproving, TeacherPlanForImproving, registered, stage_defaults
from curation.pipeline.stages.base import Stage

# Fields every sample has before any stage runs.
SAMPLE_FIELDS = {"sample_id", "source_id", "prompt", "lineage"}


class PlanError(ValueError):
    pass


@dataclass(frozen=True)
class Plan:
    modes: dict[str, int]  # official mode key -> samples sourced for it
    stages: tuple[Stage, ...]  # every stage this run needs, in dependency order
    mode_stages: dict[str, tuple[str, ...]]  # mode -> names of the stages its rows depend on
    report_stages: tuple[str, ...]  # stages run for reporting only (the checker)
    settings: dict[str, dict[str, Any]]  # stage -> its settings (declared defaults, the config's on top; not `enabled`)
    roles: dict[str, str | None]  # backend role -> the role whose backend it shares when unconfigured

    @property
    def n_source(self) -> int:
        return max(self.modes.values())

    def modes_for(self, index: int) -> list[str]:
        return [m for m, count in self.modes.items() if index < count]

    def stages_for(self, index: int) -> list[Stage]:
        names: set[str] = set()
        for mode in self.modes_for(index):
            names.update(self.mode_stages[mode])
        names.update(s for s in self.report_stages if self._deps_within(s, names))
        return [s for s in self.stages if s.name in names]

    def _deps_within(self, stage_name: str, names: set[str]) -> bool:
        stage = next(s for s in self.stages if s.name == stage_name)
        return all(self.provider(f) in names | {None} for f in stage.needs)

    def provider(self, field: str) -> str | None:
        for stage in self.stages:
            if field in stage.makes:
                return stage.name
        return None

    def describe(self) -> str:
        lines = []
        for mode, count in self.modes.items():
            lines.append(f"  {mode}: {count} samples; stages: {' → '.join(self.mode_stages[mode]) or '(none)'}")
        if self.report_stages:
            lines.append(f"  report only: {', '.join(self.report_stages)}")
        return "\n".join(lines)


IMPROVING_PLAN_SOURCES = ("teacher", "base_model")


def declared_settings(overrides: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every registered stage's settings: its declared defaults, with `overrides` (the config's) on top."""
    merged = copy.deepcopy(stage_defaults())
    for name, values in (overrides or {}).items():
        merged[name] = _merge(merged.get(name, {}), values or {})
    return merged


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else copy.deepcopy(value)
    return out


def build_plan(modes: dict[str, int], *, source_provides_images: bool, improving_initial_thinking: str = "teacher",
               settings: Mapping[str, Any] | None = None, roles: Collection[str] = ()) -> Plan:
    """The plan for `modes`. `settings`: the config's `stages` node; `roles`: the backend roles the config selects."""
    if not modes:
        raise PlanError("the recipe names no modes")
    resolved: dict[str, int] = {}
    for name, count in modes.items():
        mode = schema.resolve_mode(name)
        if int(count) < 1:
            raise PlanError(f"mode {mode} asks for {count} samples; give a positive count")
        resolved[mode] = int(count)
    if improving_initial_thinking not in IMPROVING_PLAN_SOURCES:
        raise PlanError(f"improving_initial_thinking={improving_initial_thinking!r}: use one of "
                        f"{', '.join(IMPROVING_PLAN_SOURCES)}")
    settings = declared_settings(settings)
    available = set(SAMPLE_FIELDS) | ({"hq_image"} if source_provides_images else set())

    def wanted(cls: type[Stage]) -> bool:
        if cls is (BasePlanForImproving if improving_initial_thinking == "teacher" else TeacherPlanForImproving):
            return False
        if set(cls.makes) <= available:  # the source already has it (its own high-quality images)
            return False
        if not cls.optional:
            return True
        backend = cls.role is None or cls.role in roles or cls.role_fallback in roles
        return bool(settings[cls.name].get("enabled")) and backend

    candidates = [cls for cls in registered() if wanted(cls)]
    makers: dict[str, type[Stage]] = {}
    for cls in candidates:
        for field in cls.makes:
            if field in makers:
                raise PlanError(f"both {makers[field].__name__} and {cls.__name__} make the field {field!r}")
            makers[field] = cls

    def closure(fields: set[str]) -> set[type[Stage]]:
        needed: set[type[Stage]] = set()
        todo = [f for f in fields if f not in available]
        while todo:
            field = todo.pop()
            cls = makers.get(field)
            if cls is None:
                raise PlanError(f"no stage makes the field {field!r}")
            if cls not in needed:
                needed.add(cls)
                todo.extend(f for f in cls.needs if f not in available)
        return needed

    def joined(stages: set[type[Stage]], optional: list[type[Stage]]) -> set[type[Stage]]:
        """`stages` and every optional stage whose needs they (and the ones joined before) make."""
        made = available | {f for cls in stages for f in cls.makes}
        grown = True
        while grown:
            grown = False
            for cls in optional:
                if cls not in stages and set(cls.needs) <= made:
                    stages, made, grown = stages | {cls}, made | set(cls.makes), True
        return stages

    serving = [cls for cls in candidates if cls.optional and not cls.report_only]
    reporting = [cls for cls in candidates if cls.optional and cls.report_only]
    per_mode = {m: joined(closure(set(schema.load(m).needed_fields)), serving) for m in resolved}
    used = set().union(*per_mode.values())
    report = joined(used, reporting) - used
    users = {cls: sum(cls in stages for stages in per_mode.values()) for cls in used | report}
    order = dependency_order(users)
    instances = {cls: cls() for cls in order}  # a stage with a template loads (and checks) it here
    mode_stages = {m: tuple(cls.name for cls in order if cls in per_mode[m]) for m in resolved}
    stages = tuple(instances[cls] for cls in order)
    plan_roles: dict[str, str | None] = {}
    for stage in stages:
        if stage.role is not None:
            plan_roles[stage.role] = stage.role_fallback if stage.role not in roles else None
    return Plan(modes=resolved, stages=stages, mode_stages=mode_stages,
                report_stages=tuple(cls.name for cls in order if cls in report),
                settings={s.name: {k: v for k, v in settings[s.name].items() if k != "enabled"} for s in stages},
                roles=plan_roles)


def dependency_order(users: Mapping[type[Stage], int]) -> list[type[Stage]]:
    """The stages (with how many modes use each) in topological order over needs and makes.

    Ties: checks and what they need first, the nearer to a check the sooner; then the stages more
    modes use (a sample rejected there is rejected in more modes, so skips more); then those more
    stages depend on (the same reason, within a mode); then by name."""
    classes = set(users)
    maker = {field: cls for cls in classes for field in cls.makes}
    providers = {cls: {maker[f] for f in cls.needs if f in maker} for cls in classes}
    # Steps from each stage to the nearest check that needs it (a check: 0; none: after all others).
    to_check: dict[type[Stage], float] = {cls: (0 if cls.check else math.inf) for cls in classes}
    todo = [cls for cls in classes if cls.check]
    while todo:
        cls = todo.pop()
        for provider in providers[cls]:
            if to_check[cls] + 1 < to_check[provider]:
                to_check[provider] = to_check[cls] + 1
                todo.append(provider)
    dependents: dict[type[Stage], set[type[Stage]]] = {cls: set() for cls in classes}
    for cls in sorted(classes, key=lambda c: c.name):
        todo = list(providers[cls])
        while todo:
            provider = todo.pop()
            if cls not in dependents[provider]:
                dependents[provider].add(cls)
                todo.extend(providers[provider])
    order: list[type[Stage]] = []
    done: set[type[Stage]] = set()
    while len(order) < len(classes):
        ready = [cls for cls in classes - done if providers[cls] <= done]
        if not ready:
            raise PlanError(f"the stages {sorted(c.name for c in classes - done)} need each other's fields")
        first = min(ready, key=lambda cls: (to_check[cls], -users[cls], -len(dependents[cls]), cls.name,
                                            cls.__name__))
        order.append(first)
        done.add(first)
    return order


def plan_key(plan: Plan, identities: dict[str, Any], seed: int, settings: dict[str, Any]) -> str:
    """Names one run's outcomes in the store: everything that decides them."""
    payload = {
        "modes": plan.modes,
        "stages": [(type(s).__name__, s.name, s.version, s.call_identity()) for s in plan.stages],
        "backends": identities,
        "seed": seed,
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]
