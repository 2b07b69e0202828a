"""High-quality image for a prompt, from the reference generator (when the source has none).

IRGL uses this image twice: as the high-quality image of the initial modes and as the improved
image of the improving modes. That is why there is no separate "improved image" stage.
"""

from __future__ import annotations

from curation.backends.base import GenerateRequest, GeneratedImage
from curation.records import Reject, StageOutput
from curation.stages.base import Stage, StageContext


class ReferenceImage(Stage):
    name = "reference_image"
    needs = ("prompt",)
    makes = ("hq_image",)
    role = "reference"

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        backend = ctx.backend
        request = GenerateRequest(prompt=inputs["prompt"], seed=ctx.seed, width=backend.width, height=backend.height)
        result = await backend.generate(request)
        if isinstance(result, Reject):
            return result
        ref = await ctx.save_image(result.image, **ctx.settings.get("encode", {}))
        return StageOutput(fields={"hq_image": ref}, lineage=result.lineage)
