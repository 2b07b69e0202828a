"""The teacher's improving thinking: how to turn the initial image into the improved one."""

from __future__ import annotations

from curation.backends.base import ImprovingThinkingRequest
from curation.records import Reject, StageOutput
from curation.stages.base import Stage, StageContext
from curation.thinking_checks import check_improving_thinking


class ImprovingThinking(Stage):
    name = "improving_thinking"
    needs = ("prompt", "initial_thinking", "initial_image", "hq_image")
    makes = ("improving_thinking",)
    role = "teacher"

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        initial = await ctx.load_image(inputs["initial_image"])
        target = await ctx.load_image(inputs["hq_image"])
        attempts = int(ctx.settings.get("validation_attempts", 1))
        for attempt in range(attempts):
            seed = ctx.seed + attempt
            request = ImprovingThinkingRequest(inputs["prompt"], inputs["initial_thinking"], initial, target, seed)
            result = await ctx.backend.improving_thinking(request)
            if isinstance(result, Reject):
                return result
            problem = check_improving_thinking(result.text, ctx.settings.get("limits", {}))
            if problem is None:
                return StageOutput(fields={"improving_thinking": result.text},
                                   lineage={**result.lineage, "validation_attempts": attempt + 1, "seed": seed})
        return self.reject(problem.reason, f"{problem.detail} (after {attempts} attempts)")
