"""What the quality stages share: scoring one stored image, and checking scores against thresholds.

Thresholds are stage settings (part of the stage key), so changing one re-decides every sample
without scoring any image again: the scores live in the scoring stages' results.
"""

from __future__ import annotations

from abc import ABC
from typing import Any, ClassVar, Mapping

from curation.pipeline.semantic_dedup import encode_embedding
from curation.pipeline.stages.base import Stage, StageContext
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


class ImageQualityCheck(Stage, ABC):
    """One image's scores against the thresholds: the scores pass through, or the first failed check
    is the sample's reject. A subclass names the scores it reads (its one `needs`) and what it makes."""

    role = None
    optional = True  # runs when a scorer is configured (scorer=...)
    check = True
    defaults: ClassVar[dict[str, Any]] = {"enabled": True, "min_alignment": None, "min_aesthetic": None,
                                          "max_unsafe": None}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        (scores_field,), (made,) = self.needs, self.makes
        scores = inputs[scores_field]
        failure = failed_check(scores, ctx.settings)
        if failure is not None:
            return self.reject(*failure)
        return StageOutput(fields={made: scores}, lineage={"scores": scores, "thresholds": thresholds(ctx.settings)})
