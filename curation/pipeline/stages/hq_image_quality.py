"""The high-quality image's scores against the thresholds: `low_alignment`, `low_aesthetic`, `unsafe`.

Every mode needs this stage when a scorer is configured, so a rejected source image costs no
teacher call: the executor skips the later stages of a sample every mode has rejected.
"""

from __future__ import annotations

from curation.pipeline.stages.base import Stage, StageContext
from curation.pipeline.stages.quality_checks import failed_check, thresholds
from curation.core.records import Reject, StageOutput


class HqImageQuality(Stage):
    name = "hq_image_quality"
    needs = ("hq_image_scores",)
    makes = ("hq_image_quality",)
    role = None
    optional = True  # runs when a scorer is configured (scorer=...)
    check = True
    defaults = {"enabled": True, "min_alignment": None, "min_aesthetic": None, "max_unsafe": None}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        scores = inputs["hq_image_scores"]
        failure = failed_check(scores, ctx.settings)
        if failure is not None:
            return self.reject(*failure)
        return StageOutput(fields={"hq_image_quality": scores},
                           lineage={"scores": scores, "thresholds": thresholds(ctx.settings)})
