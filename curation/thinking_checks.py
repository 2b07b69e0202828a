"""Validation of every thinking a teacher writes. Each failure is a named reject reason.

The format is IRGL.md's: a thinking is wrapped in one `<think>…</think>`; an improving thinking
has an opening paragraph and then three headed sections in a fixed order, and never lets on that
its writer saw the improved image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

IMPROVING_SECTIONS = (
    "### Detailed Explanation of Required Improvements:",
    "### Step-by-Step Modification Guidance:",
    "### Final Comprehensive Prompt for the Improved Image:",
)

# Phrases that give away that the teacher was shown the target image.
LEAK_PATTERNS = re.compile(
    r"\b(second image|other image|reference image|target image|ground[- ]truth|the improved image (?:shows|has|is)"
    r"|image b\b|compared to the (?:second|reference|target)|the provided (?:reference|target))",
    re.IGNORECASE,
)

DEFAULT_LIMITS = {"min_chars": 80, "max_chars": 8000}


@dataclass(frozen=True)
class Problem:
    reason: str
    detail: str


def _inner(text: str) -> tuple[str | None, Problem | None]:
    if not text or not text.strip():
        return None, Problem("empty_output", "the teacher returned no text")
    opens, closes = text.count("<think>"), text.count("</think>")
    if opens == 0 or closes == 0:
        return None, Problem("missing_think_tags", f"{opens} <think> and {closes} </think> tags")
    if opens != 1 or closes != 1 or text.index("<think>") > text.index("</think>"):
        return None, Problem("unbalanced_think_tags", f"{opens} <think> and {closes} </think> tags, or out of order")
    inner = text.split("<think>", 1)[1].split("</think>", 1)[0]
    return inner, None


def _length(inner: str, limits: Mapping) -> Problem | None:
    limits = {**DEFAULT_LIMITS, **dict(limits)}
    n = len(inner.strip())
    if n < limits["min_chars"]:
        return Problem("too_short", f"{n} characters inside <think> (minimum {limits['min_chars']})")
    if n > limits["max_chars"]:
        return Problem("too_long", f"{n} characters inside <think> (maximum {limits['max_chars']})")
    return None


def check_initial_thinking(text: str, limits: Mapping = DEFAULT_LIMITS) -> Problem | None:
    inner, problem = _inner(text)
    return problem or _length(inner, limits)


def check_improving_thinking(text: str, limits: Mapping = DEFAULT_LIMITS) -> Problem | None:
    inner, problem = _inner(text)
    if problem:
        return problem
    problem = _length(inner, limits)
    if problem:
        return problem
    positions = [inner.find(header) for header in IMPROVING_SECTIONS]
    missing = [h for h, p in zip(IMPROVING_SECTIONS, positions) if p < 0]
    if missing:
        return Problem("missing_sections", "missing " + "; ".join(missing))
    if positions != sorted(positions):
        return Problem("sections_out_of_order", "the three headed sections are not in IRGL order")
    if not inner[: positions[0]].strip():
        return Problem("missing_sections", "no opening paragraph before the first section")
    final = inner[positions[-1] + len(IMPROVING_SECTIONS[-1]):].strip()
    if not final:
        return Problem("missing_sections", "the final comprehensive prompt is empty")
    leak = LEAK_PATTERNS.search(inner)
    if leak:
        return Problem("leaks_target", f"mentions {leak.group(0)!r}")
    return None
