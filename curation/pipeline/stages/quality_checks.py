"""What the quality stages share: scoring one stored image, and checking scores against thresholds.

Thresholds are stage settings (part of the stage key), so changing one re-decides every sample
without scoring any image again: the scores live in the scoring stages' results.
"""

from __future__ import annotations

from typing import Any, Mapping

from curation.pipeline.semantic_dedup import encode_embedding
from curation.pipeline.stages.base import StageContext
from curation.core import reasons
from curation.core.images import ImageRef
from curation.core.records import Reject, StageOutput

# (score, threshold knob, reject reason, passes): a score passes when it is on the right side of
# its threshold, the threshold itself included; a knob set to null switches that check off.
CHECKS = (
    ("alignment", "min_alignment", reasons.LOW_ALIGNMENT, lambda value, limit: value >= limit),
    ("aesthetic", "min_aesthetic", reasons.LOW_AESTHETIC, lambda value, limit: value >= limit),
    ("unsafe", "max_unsafe", reasons.UNSAFE, lambda value, limit: value <= limit),
)


async def score_image(stage: str, prompt: str, ref: ImageRef, ctx: StageContext, field: str,
                      embedding_field: str | None = None) -> StageOutput | Reject:
    """Ask the scorer about one image; every score goes into lineage with the model that made it."""
    image = await ctx.load_image_input(ref)
    result = await ctx.backend.score(prompt, image)
    if isinstance(result, Reject):
        return Reject(stage, result.reason, result.detail, result.transient)
    scores = result.measured()
    fields: dict[str, Any] = {field: scores}
    if embedding_field is not None:
        fields[embedding_field] = None if result.embedding is None else encode_embedding(result.embedding)
    lineage = {kind: {"value": value, **result.models.get(kind, {})} for kind, value in scores.items()}
    return StageOutput(fields=fields, lineage=lineage)


def failed_check(scores: Mapping[str, float], settings: Mapping[str, Any]) -> tuple[str, str] | None:
    """`(reason, detail)` of the first check the scores fail, or None when they pass them all."""
    for score, knob, reason, passes in CHECKS:
        limit = settings.get(knob)
        if limit is None:
            continue
        value = scores.get(score)
        if value is None:
            return reasons.SCORE_NOT_MEASURED, f"{knob}={limit} is set but the scorer measures no {score}"
        if not passes(value, limit):
            return reason, f"{score} {value:.4f}, {knob} {limit}"
    return None


def thresholds(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {knob: settings.get(knob) for _, knob, _, _ in CHECKS}
