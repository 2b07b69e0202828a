"""What both image stages do: ask a generator for the prompt's image and store it once."""

from __future__ import annotations

from curation.backends.base import GenerateRequest
from curation.core.records import Reject
from curation.pipeline.stages.base import StageContext


async def generate_and_store(prompt: str, ctx: StageContext):
    """(ImageRef, GeneratedImage) or the generator's Reject."""
    backend = ctx.backend
    request = GenerateRequest(prompt=prompt, seed=ctx.seed, width=backend.width, height=backend.height)
    result = await backend.generate(request)
    if isinstance(result, Reject):
        return result
    ref = await ctx.save_image(result.image, **ctx.settings["encode"])
    return ref, result
