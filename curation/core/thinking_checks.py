"""Validation of every thinking a teacher writes. Each failure is a named reject reason.

The format is IRGL.md's: a thinking is wrapped in one `<think>…</think>` with nothing around it;
an improving thinking has an opening paragraph and then three headed sections in a fixed order,
and never lets on that its writer saw the improved image. An initial thinking is a plan written
before any image exists, so it must not talk about "the provided image" either.

Reasons, checked in this order (the first that applies is reported):
  truncated              the teacher stopped at its token limit (`finish_reason == "length"`)
  empty_output           no text at all
  missing_think_tags     no `<think>` or no `</think>`
  unbalanced_think_tags  more than one of either, or `</think>` before `<think>`
  text_outside_think     anything but whitespace before `<think>` or after `</think>`
  special_tokens         chat-template tokens such as `<|im_end|>` inside the text (they would
                         break the training sequence, whose segments are `<|im_start|> … <|im_end|>`)
  too_short / too_long   characters inside the tags, against the stage's `limits`
  missing_sections / sections_out_of_order   (improving) the four IRGL parts
  leaks_target           (improving) mentions the second/reference/target image;
                         (initial) refers to an image that was provided or shown
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

# Phrases that give away that the teacher was shown the target image. The improving thinking may
# speak of "the previous/initial/current image" and of "the improved image" it asks for; it may
# not speak of a second picture it was given.
LEAK_PATTERNS = re.compile(
    r"\b(second image|other image|reference image|target image|ground[- ]truth|the improved image (?:shows|has|is)"
    r"|image b\b|compared to the (?:second|reference|target)|the provided (?:reference|target)"
    r"|first image|both images|two images|(?:the )?(?:second|latter|better|higher[- ]quality) (?:picture|photo|version)"
    r"|reference (?:picture|photo)|target (?:picture|photo)|image (?:2|two)\b"
    r"|as (?:shown|seen) in the (?:second|reference|target)"
    r"|(?:i was|i've been|i have been) (?:shown|given)|the (?:given|provided|attached) images)",
    re.IGNORECASE,
)

# An initial thinking plans a picture that does not exist yet: it must not refer to one it was shown.
INITIAL_LEAK_PATTERNS = re.compile(
    r"\b(reference image|provided image|given image|attached image"
    r"|the image (?:provided|given|attached|above|you showed)"
    r"|as (?:shown|seen) in the (?:image|picture|photo)|in the (?:provided|given|attached) (?:picture|photo))",
    re.IGNORECASE,
)

SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>")

DEFAULT_LIMITS = {"min_chars": 80, "max_chars": 8000}

_EXCERPT = 60  # characters of the offending text quoted in a reject's detail


@dataclass(frozen=True)
class Problem:
    reason: str
    detail: str


class TeacherText(str):
    """A teacher's text that remembers why generation stopped.

    Teachers return it as `TeacherOutput.text`; the checks read `finish_reason` so that an output
    cut at the token limit is rejected as `truncated` (and resampled by the stage) even when its
    tags happen to balance. Everywhere else it is an ordinary `str` (stored and emitted as text).
    """

    finish_reason: str | None

    def __new__(cls, text: str, finish_reason: str | None = None) -> "TeacherText":
        obj = super().__new__(cls, text)
        obj.finish_reason = finish_reason
        return obj


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…")


def _inner(text: str) -> tuple[str | None, Problem | None]:
    if getattr(text, "finish_reason", None) == "length":
        return None, Problem("truncated", f"the teacher hit its token limit (finish_reason length); "
                                          f"raise the teacher's max_tokens; starts {_excerpt(text)}")
    if not text or not text.strip():
        return None, Problem("empty_output", "the teacher returned no text")
    opens, closes = text.count("<think>"), text.count("</think>")
    if opens == 0 or closes == 0:
        return None, Problem("missing_think_tags",
                             f"{opens} <think> and {closes} </think> tags; starts {_excerpt(text)}")
    if opens != 1 or closes != 1 or text.index("<think>") > text.index("</think>"):
        return None, Problem("unbalanced_think_tags", f"{opens} <think> and {closes} </think> tags, or out of order")
    before, rest = text.split("<think>", 1)
    inner, after = rest.split("</think>", 1)
    if before.strip() or after.strip():
        outside = before.strip() or after.strip()
        return None, Problem("text_outside_think", f"text outside the tags: {_excerpt(outside)}")
    token = SPECIAL_TOKEN.search(inner)
    if token:
        return None, Problem("special_tokens", f"contains the chat-template token {token.group(0)}")
    return inner, None


def _length(inner: str, limits: Mapping) -> Problem | None:
    limits = {**DEFAULT_LIMITS, **dict(limits)}
    n = len(inner.strip())
    if n < limits["min_chars"]:
        return Problem("too_short", f"{n} characters inside <think> (minimum {limits['min_chars']})")
    if n > limits["max_chars"]:
        return Problem("too_long", f"{n} characters inside <think> (maximum {limits['max_chars']})")
    return None


def _wrapped_text(text: str, limits: Mapping) -> tuple[str | None, Problem | None]:
    """What every thinking must be: one well-formed `<think>` block of an allowed length."""
    inner, problem = _inner(text)
    return (None, problem) if problem else (inner, _length(inner, limits))


def check_initial_thinking(text: str, limits: Mapping = DEFAULT_LIMITS) -> Problem | None:
    inner, problem = _wrapped_text(text, limits)
    if problem:
        return problem
    leak = INITIAL_LEAK_PATTERNS.search(inner)
    if leak:
        return Problem("leaks_target", f"refers to an image it was shown: {leak.group(0)!r}")
    return None


def check_improving_thinking(text: str, limits: Mapping = DEFAULT_LIMITS) -> Problem | None:
    inner, problem = _wrapped_text(text, limits)
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
