"""The teacher's improving thinking: how to turn the initial image into the improved one."""

from __future__ import annotations

from curation.backends.base import ImprovingThinkingRequest
from curation.core.records import Reject, StageOutput
from curation.pipeline.stages.base import Stage, StageContext
from curation.pipeline.stages.thinking_loop import ask_until_valid
from curation.core.thinking_checks import check_improving_thinking


class ImprovingThinking(Stage):
    name = "improving_thinking"
    needs = ("prompt", "improving_initial_thinking", "initial_image", "hq_image")
    makes = ("improving_thinking",)
    role = "teacher"

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        initial = await ctx.load_image_input(inputs["initial_image"])
        hq = await ctx.load_image_input(inputs["hq_image"])

        def ask(seed: int):
            request = ImprovingThinkingRequest(inputs["prompt"], inputs["improving_initial_thinking"], initial, hq, seed)
            return ctx.backend.improving_thinking(request)

        return await ask_until_valid(self.name, "improving_thinking", ctx, ask, check_improving_thinking)
