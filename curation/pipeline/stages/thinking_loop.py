"""The loop both thinking stages share: ask, validate, resample with a new seed, or reject."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping

from curation.core.records import Reject, StageOutput
from curation.core.thinking_checks import Problem
from curation.pipeline.stages.base import ChatStage, StageContext


async def ask_until_valid(stage: ChatStage, inputs: dict, ctx: StageContext, field: str,
                          check: Callable[[str, Mapping], Problem | None]) -> StageOutput | Reject:
    """Up to `validation_attempts` answers (a stage setting), each with its own seed (a resample, not a replay)."""
    attempts = int(ctx.settings["validation_attempts"])
    request = await stage.request(inputs, ctx, ctx.seed)  # images loaded once for every attempt
    problem: Problem | None = None
    for attempt in range(attempts):
        seed = ctx.seed + attempt
        result = await ctx.backend.chat(replace(request, seed=seed))
        if isinstance(result, Reject):
            return result
        problem = check(result.text, ctx.settings["limits"])
        if problem is None:
            return StageOutput(fields={field: result.text},
                               lineage={"template": stage.chat_template.tag, **result.lineage,
                                        "validation_attempts": attempt + 1, "seed": seed})
    return stage.reject(problem.reason, f"{problem.detail} (after {attempts} attempts)")
