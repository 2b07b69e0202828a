"""The initial image's scores against its own thresholds.

The initial image is meant to be the weaker one, so its defaults check safety only: a generated
image that is unsafe must not reach the shards, a merely poor one is what the improving modes teach
the model to fix. (`stages.initial_image_quality.min_alignment` etc. add floors for broken images.)
"""

from __future__ import annotations

from curation.pipeline.stages.quality_checks import ImageQualityCheck


class InitialImageQuality(ImageQualityCheck):
    name = "initial_image_quality"
    needs = ("initial_image_scores",)
    makes = ("initial_image_quality",)
