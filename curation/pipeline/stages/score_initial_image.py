"""Scores of the base model's initial image, right after it is generated."""

from __future__ import annotations

from curation.pipeline.stages.base import Stage, StageContext
from curation.pipeline.stages.quality_checks import score_image
from curation.core.records import Reject, StageOutput


class ScoreInitialImage(Stage):
    name = "score_initial_image"
    needs = ("prompt", "initial_image")
    makes = ("initial_image_scores",)
    role = "scorer"
    optional = True  # runs when a scorer is configured (scorer=...)
    defaults = {"enabled": True}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        return await score_image(self.name, inputs["prompt"], inputs["initial_image"], ctx, "initial_image_scores")
