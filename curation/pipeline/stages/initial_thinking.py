"""The teacher's initial thinking: a plan for the prompt that agrees with the high-quality image."""

from __future__ import annotations

from curation.core.records import Reject, StageOutput
from curation.core.thinking_checks import check_initial_thinking
from curation.pipeline.stages.base import ChatStage, StageContext
from curation.pipeline.stages.thinking_loop import ask_until_valid


class InitialThinking(ChatStage):
    name = "initial_thinking"
    needs = ("prompt", "hq_image")
    makes = ("initial_thinking",)
    template = "teacher_initial_thinking"
    images = ("hq_image",)
    defaults = {"validation_attempts": 3, "limits": {"min_chars": 80, "max_chars": 8000}}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        return await ask_until_valid(self, inputs, ctx, "initial_thinking", check_initial_thinking)
