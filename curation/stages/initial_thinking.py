"""The teacher's initial thinking: a plan for the prompt that agrees with the high-quality image."""

from __future__ import annotations

from curation.backends.base import InitialThinkingRequest
from curation.records import Reject, StageOutput
from curation.stages.base import Stage, StageContext
from curation.thinking_checks import check_initial_thinking


class InitialThinking(Stage):
    name = "initial_thinking"
    needs = ("prompt", "hq_image")
    makes = ("initial_thinking",)
    role = "teacher"

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        image = await ctx.load_image(inputs["hq_image"])
        attempts = int(ctx.settings.get("validation_attempts", 1))
        for attempt in range(attempts):
            seed = ctx.seed + attempt  # a new seed per attempt: a resample, not a replay
            result = await ctx.backend.initial_thinking(InitialThinkingRequest(inputs["prompt"], image, seed))
            if isinstance(result, Reject):
                return result
            problem = check_initial_thinking(result.text, ctx.settings.get("limits", {}))
            if problem is None:
                return StageOutput(fields={"initial_thinking": result.text},
                                   lineage={**result.lineage, "validation_attempts": attempt + 1, "seed": seed})
        return self.reject(problem.reason, f"{problem.detail} (after {attempts} attempts)")
