"""High-quality image for a prompt, from the reference generator (when the source has none).

IRGL uses this image twice: as the high-quality image of the initial modes and as the improved
image of the improving modes. That is why there is no separate "improved image" stage.
"""

from __future__ import annotations

from curation.core.records import Reject, StageOutput
from curation.pipeline.stages.base import Stage, StageContext
from curation.pipeline.stages.generate import generate_and_store


class ReferenceImage(Stage):
    name = "reference_image"
    needs = ("prompt",)
    makes = ("hq_image",)
    role = "reference"
    defaults = {"encode": {"fmt": "png", "png_compress_level": 6}}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        result = await generate_and_store(inputs["prompt"], ctx)
        if isinstance(result, Reject):
            return result
        ref, generated = result
        return StageOutput(fields={"hq_image": ref}, lineage=generated.lineage)
