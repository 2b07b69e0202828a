"""Checker scores of the initial and the improved image against the prompt (report only)."""

from __future__ import annotations

from curation.core.records import Reject, StageOutput
from curation.pipeline.stages.base import Stage, StageContext


class Score(Stage):
    name = "score"
    needs = ("prompt", "initial_image", "hq_image")
    makes = ("initial_score", "improved_score")
    role = "checker"
    optional = True  # runs when a checker is configured (checker=...)
    report_only = True
    defaults = {"enabled": True}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        scores = {}
        for field, out in (("initial_image", "initial_score"), ("hq_image", "improved_score")):
            image = await ctx.load_image(inputs[field])
            result = await ctx.backend.score(inputs["prompt"], image)
            if isinstance(result, Reject):
                return result
            scores[out] = result
        return StageOutput(fields=scores)
