"""The high-quality image's scores against the thresholds: `low_alignment`, `low_aesthetic`, `unsafe`.

Every mode needs this stage when a scorer is configured, so a rejected source image costs no
teacher call: the executor skips the later stages of a sample every mode has rejected.
"""

from __future__ import annotations

from curation.pipeline.stages.quality_checks import ImageQualityCheck


class HqImageQuality(ImageQualityCheck):
    name = "hq_image_quality"
    needs = ("hq_image_scores",)
    makes = ("hq_image_quality",)
