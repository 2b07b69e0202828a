"""The initial image's scores against its own thresholds.

The initial image is meant to be the weaker one, so its defaults check safety only: a generated
image that is unsafe must not reach the shards, a merely poor one is what the improving modes teach
the model to fix. (`stages.initial_image_quality.min_alignment` etc. add floors for broken images.)
"""

from __future__ import annotations

from curation.pipeline.stages.base import Stage, StageContext
from curation.pipeline.stages.quality_checks import failed_check, thresholds
from curation.core.records import Reject, StageOutput


class InitialImageQuality(Stage):
    name = "initial_image_quality"
    needs = ("initial_image_scores",)
    makes = ("initial_image_quality",)
    role = None
    optional = True  # runs when a scorer is configured (scorer=...)
    check = True
    defaults = {"enabled": True, "min_alignment": None, "min_aesthetic": None, "max_unsafe": None}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        scores = inputs["initial_image_scores"]
        failure = failed_check(scores, ctx.settings)
        if failure is not None:
            return self.reject(*failure)
        return StageOutput(fields={"initial_image_quality": scores},
                           lineage={"scores": scores, "thresholds": thresholds(ctx.settings)})
