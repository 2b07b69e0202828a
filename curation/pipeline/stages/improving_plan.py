"""The initial thinking the improving modes condition on: the teacher's, or the base model's own.

IRGL.md: "in the improving modes the base model's own first thinking may serve as the initial
thinking". With `improving_initial_thinking=base_model` (and a generator that writes one, e.g.
`generator=bagel generator.think=true`) the improving modes take the plan the base model wrote
before drawing its initial image — the plan that image actually followed. The initial and
understanding modes always keep the teacher's thinking: theirs must agree with the high-quality
image. Exactly one of the two stages below is in a plan (`plan.build_plan` picks it by
`improving_initial_thinking`).
"""

from __future__ import annotations

from curation.core.records import Reject, StageOutput
from curation.pipeline.stages.base import Stage, StageContext
from curation.core.thinking_checks import check_initial_thinking


class TeacherPlanForImproving(Stage):
    """The default: the improving modes use the teacher's initial thinking (no model call)."""

    name = "improving_initial_thinking"
    needs = ("initial_thinking",)
    makes = ("improving_initial_thinking",)
    role = None

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        return StageOutput(fields={"improving_initial_thinking": inputs["initial_thinking"]},
                           lineage={"from": "teacher"})


class BasePlanForImproving(Stage):
    """The base model's own first thinking, validated like a teacher's."""

    name = "improving_initial_thinking"
    needs = ("base_thinking",)
    makes = ("improving_initial_thinking",)
    role = None
    defaults = {"limits": {"min_chars": 80, "max_chars": 8000}}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        text = inputs["base_thinking"]
        if not isinstance(text, str) or not text.strip():
            return self.reject("no_base_thinking", "the base model wrote no thinking: use a generator in think "
                               "mode (generator=bagel generator.think=true) or improving_initial_thinking=teacher")
        if "<think>" not in text and "</think>" not in text:
            text = f"<think>\n{text.strip()}\n</think>"  # BAGEL may return the plan without its tags
        problem = check_initial_thinking(text, ctx.settings["limits"])
        if problem is not None:
            return self.reject(problem.reason, problem.detail)
        return StageOutput(fields={"improving_initial_thinking": text}, lineage={"from": "base_model"})
