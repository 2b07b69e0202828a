"""The base model's first image for a prompt (the weaker image A of the improving modes)."""

from __future__ import annotations

from curation.core.records import Reject, StageOutput
from curation.pipeline.stages.base import Stage, StageContext
from curation.pipeline.stages.generate import generate_and_store


class InitialImage(Stage):
    name = "initial_image"
    needs = ("prompt",)
    makes = ("initial_image", "base_thinking")
    role = "generator"
    defaults = {"encode": {"fmt": "png", "png_compress_level": 6}}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        result = await generate_and_store(inputs["prompt"], ctx)
        if isinstance(result, Reject):
            return result
        ref, generated = result
        # The generator's lineage (for the offline base model: the defects it injected) is
        # recorded here and never becomes a field, so no later stage can read it.
        return StageOutput(fields={"initial_image": ref, "base_thinking": generated.thinking}, lineage=generated.lineage)
