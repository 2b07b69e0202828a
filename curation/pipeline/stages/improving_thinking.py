"""The teacher's improving thinking: how to turn the initial image into the improved one."""

from __future__ import annotations

from curation.core.records import Reject, StageOutput
from curation.core.thinking_checks import check_improving_thinking
from curation.pipeline.stages.base import ChatStage, StageContext
from curation.pipeline.stages.thinking_loop import ask_until_valid


class ImprovingThinking(ChatStage):
    name = "improving_thinking"
    needs = ("prompt", "improving_initial_thinking", "initial_image", "hq_image")
    makes = ("improving_thinking",)
    template = "teacher_improving_thinking"
    images = ("initial_image", "hq_image")  # the hq image is seen by the teacher, never to be mentioned
    defaults = {"validation_attempts": 3, "limits": {"min_chars": 200, "max_chars": 12000}}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        return await ask_until_valid(self, inputs, ctx, "improving_thinking", check_improving_thinking)
