"""The teacher's initial thinking: a plan for the prompt that agrees with the high-quality image."""

from __future__ import annotations

from curation.backends.base import InitialThinkingRequest
from curation.core.records import Reject, StageOutput
from curation.pipeline.stages.base import Stage, StageContext
from curation.pipeline.stages.thinking_loop import ask_until_valid
from curation.core.thinking_checks import check_initial_thinking


class InitialThinking(Stage):
    name = "initial_thinking"
    needs = ("prompt", "hq_image")
    makes = ("initial_thinking",)
    role = "teacher"

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        image = await ctx.load_image_input(inputs["hq_image"])

        def ask(seed: int):
            return ctx.backend.initial_thinking(InitialThinkingRequest(inputs["prompt"], image, seed))

        return await ask_until_valid(self.name, "initial_thinking", ctx, ask, check_initial_thinking)
