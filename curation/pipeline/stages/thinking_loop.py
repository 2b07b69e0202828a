"""The loop both teacher stages share: ask, validate, resample with a new seed, or reject."""

from __future__ import annotations

from typing import Awaitable, Callable, Mapping

from curation.backends.base import TeacherOutput
from curation.core.records import Reject, StageOutput
from curation.pipeline.stages.base import StageContext
from curation.core.thinking_checks import Problem


async def ask_until_valid(stage_name: str, field: str, ctx: StageContext,
                          ask: Callable[[int], Awaitable[TeacherOutput | Reject]],
                          check: Callable[[str, Mapping], Problem | None]) -> StageOutput | Reject:
    """Up to `validation_attempts` answers, each with its own seed (a resample, not a replay)."""
    attempts = int(ctx.settings.get("validation_attempts", 1))
    problem: Problem | None = None
    for attempt in range(attempts):
        seed = ctx.seed + attempt
        result = await ask(seed)
        if isinstance(result, Reject):
            return result
        problem = check(result.text, ctx.settings.get("limits", {}))
        if problem is None:
            return StageOutput(fields={field: result.text},
                               lineage={**result.lineage, "validation_attempts": attempt + 1, "seed": seed})
    return Reject(stage_name, problem.reason, f"{problem.detail} (after {attempts} attempts)")
