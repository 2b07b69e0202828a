"""The base model's first image for a prompt (the weaker image A of the improving modes)."""

from __future__ import annotations

from curation.backends.base import GenerateRequest
from curation.records import Reject, StageOutput
from curation.stages.base import Stage, StageContext


class InitialImage(Stage):
    name = "initial_image"
    needs = ("prompt",)
    makes = ("initial_image", "base_thinking")
    role = "generator"

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        backend = ctx.backend
        request = GenerateRequest(prompt=inputs["prompt"], seed=ctx.seed, width=backend.width, height=backend.height)
        result = await backend.generate(request)
        if isinstance(result, Reject):
            return result
        ref = await ctx.save_image(result.image, **ctx.settings.get("encode", {}))
        # The generator's lineage (for the offline base model: the defects it injected) is
        # recorded here and never becomes a field, so no later stage can read it.
        return StageOutput(fields={"initial_image": ref, "base_thinking": result.thinking}, lineage=result.lineage)
