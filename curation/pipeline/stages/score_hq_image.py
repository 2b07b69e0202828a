"""Scores of the high-quality image, right after it exists and before any teacher call."""

from __future__ import annotations

from curation.pipeline.stages.base import Stage, StageContext
from curation.pipeline.stages.quality_checks import score_image
from curation.core.records import Reject, StageOutput


class ScoreHqImage(Stage):
    name = "score_hq_image"
    needs = ("prompt", "hq_image")
    makes = ("hq_image_scores", "hq_image_embedding")  # the embedding is for the semantic dedup
    role = "scorer"
    optional = True  # runs when a scorer is configured (scorer=...)
    defaults = {"enabled": True}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        return await score_image(self.name, inputs["prompt"], inputs["hq_image"], ctx, "hq_image_scores",
                                 embedding_field="hq_image_embedding")
