"""Recipe → modes → the stages they need, in data-flow order.

Stages are derived, not listed by hand: each mode's schema names the fields its rows are made
from, and each stage declares what it needs and makes. A recipe therefore runs exactly what its
modes need, and `all` runs each shared stage once for every mode that uses it.

With a scorer (`with_scorer`), the quality stages join every mode: each mode needs the checked
high-quality image (`hq_image_quality`), and each mode that uses the initial image also needs the
initial image checked and the improvement check (`alignment_gain`). They are added through the
same closure, so their own needs (the scoring stages, the reference image) follow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from curation.core import schema
from curation.pipeline.stages import ALL_STAGES, QUALITY_STAGES, BasePlanForImproving, TeacherPlanForImproving
from curation.pipeline.stages.base import Stage

# Fields every sample has before any stage runs.
SAMPLE_FIELDS = {"sample_id", "source_id", "prompt", "lineage"}


class PlanError(ValueError):
    pass


@dataclass(frozen=True)
class Plan:
    modes: dict[str, int]  # official mode key -> samples sourced for it
    stages: tuple[Stage, ...]  # every stage this run needs, in data-flow order
    mode_stages: dict[str, tuple[str, ...]]  # mode -> names of the stages its rows depend on
    report_stages: tuple[str, ...]  # stages run for reporting only (the checker)

    @property
    def n_source(self) -> int:
        return max(self.modes.values())

    def modes_for(self, index: int) -> list[str]:
        return [m for m, count in self.modes.items() if index < count]

    def stages_for(self, index: int) -> list[Stage]:
        names: set[str] = set()
        for mode in self.modes_for(index):
            names.update(self.mode_stages[mode])
        if names & {"initial_image"}:
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


def build_plan(modes: dict[str, int], *, source_provides_images: bool, with_checker: bool,
               improving_initial_thinking: str = "teacher", with_scorer: bool = False) -> Plan:
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
    unused = BasePlanForImproving if improving_initial_thinking == "teacher" else TeacherPlanForImproving
    stages = [cls() for cls in ALL_STAGES if cls is not unused and (with_scorer or cls not in QUALITY_STAGES)]
    if source_provides_images:
        stages = [s for s in stages if "hq_image" not in s.makes]
    makers = {field: s for s in stages for field in s.makes}
    available = set(SAMPLE_FIELDS) | ({"hq_image"} if source_provides_images else set())

    def closure(fields: set[str]) -> set[str]:
        needed: set[str] = set()
        todo = [f for f in fields if f not in available]
        while todo:
            field = todo.pop()
            stage = makers.get(field)
            if stage is None:
                raise PlanError(f"no stage makes the field {field!r}")
            if stage.name not in needed:
                needed.add(stage.name)
                todo.extend(f for f in stage.needs if f not in available)
        return needed

    def mode_needs(mode: str) -> set[str]:
        needed = closure(set(schema.load(mode).needed_fields))
        if with_scorer:
            needed |= closure({"hq_image_quality"})
            if "initial_image" in needed:
                needed |= closure({"alignment_gain"})
        return needed

    order = [s.name for s in stages]
    mode_stages = {m: tuple(n for n in order if n in mode_needs(m)) for m in resolved}
    used = set().union(*mode_stages.values())
    report = ()
    if with_checker and "initial_image" in used:
        score = next(s for s in stages if s.name == "score")
        report = ("score",)
        used |= {score.name} | closure(set(score.needs))
    return Plan(modes=resolved, stages=tuple(s for s in stages if s.name in used),
                mode_stages=mode_stages, report_stages=report)


def plan_key(plan: Plan, identities: dict[str, Any], seed: int, settings: dict[str, Any]) -> str:
    """Names one run's outcomes in the store: everything that decides them."""
    payload = {
        "modes": plan.modes,
        "stages": [(type(s).__name__, s.name, s.version) for s in plan.stages],
        "backends": identities,
        "seed": seed,
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]
