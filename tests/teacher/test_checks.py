"""Validation of teacher outputs: each failure is its own named reason."""

from __future__ import annotations

import json

import pytest

from curation.core.thinking_checks import TeacherText, check_improving_thinking, check_initial_thinking

PLAN = ("Two red balls sit on the left of a wooden table, a blue cube on the right; soft window light "
        "from the left, warm colours, a shallow depth of field and a plain grey wall behind.")
OPENING = "The previous image shows only one red ball, and the cube is green instead of blue. " * 2
SECTIONS = ("### Detailed Explanation of Required Improvements:\nAdd the second ball; recolour the cube blue.\n"
            "### Step-by-Step Modification Guidance:\n1. Add a red ball. 2. Make the cube blue. 3. Warm the light.\n"
            "### Final Comprehensive Prompt for the Improved Image:\nTwo red balls left of a blue cube, warm light.")
IMPROVING = f"<think>\n{OPENING}\n{SECTIONS}\n</think>"
LIMITS = {"min_chars": 80, "max_chars": 8000}


def reason(problem):
    return problem.reason if problem else None


def test_valid_thinkings_pass():
    assert check_initial_thinking(f"<think>\n{PLAN}\n</think>", LIMITS) is None
    assert check_improving_thinking(IMPROVING, {"min_chars": 200, "max_chars": 12000}) is None
    assert check_initial_thinking(TeacherText(f"  <think>{PLAN}</think>\n", "stop"), LIMITS) is None


@pytest.mark.parametrize("text,expected", [
    (TeacherText(f"<think>\n{PLAN}\n</think>", "length"), "truncated"),  # cut at the limit, even if it looks whole
    (TeacherText(f"<think>\n{PLAN}", "length"), "truncated"),
    ("", "empty_output"),
    ("   \n", "empty_output"),
    (PLAN, "missing_think_tags"),
    (f"<think>{PLAN}", "missing_think_tags"),
    (f"<think><think>{PLAN}</think>", "unbalanced_think_tags"),
    (f"</think>{PLAN}<think>", "unbalanced_think_tags"),
    (f"Sure! Here is the plan: <think>{PLAN}</think>", "text_outside_think"),
    (f"<think>{PLAN}</think> I hope this helps.", "text_outside_think"),
    (f"<think>{PLAN}<|im_end|></think>", "special_tokens"),
    ("<think>a ball</think>", "too_short"),
    (f"<think>{PLAN * 100}</think>", "too_long"),
    (f"<think>{PLAN} As shown in the image, the balls are glossy.</think>", "leaks_target"),
    (f"<think>{PLAN} Match the reference image exactly.</think>", "leaks_target"),
])
def test_initial_thinking_reasons(text, expected):
    assert reason(check_initial_thinking(text, LIMITS)) == expected


@pytest.mark.parametrize("text,expected", [
    (TeacherText(IMPROVING, "length"), "truncated"),
    (f"<think>\n{OPENING * 2}\n</think>", "missing_sections"),
    (f"<think>\n{SECTIONS}\n</think>", "missing_sections"),  # no opening paragraph
    (IMPROVING.replace("Two red balls left of a blue cube, warm light.", ""), "missing_sections"),
    (f"<think>\n{OPENING}\n" + "\n".join(reversed(SECTIONS.split("\n"))) + "\n</think>", "sections_out_of_order"),
    (IMPROVING.replace("Add the second ball", "Copy the second image"), "leaks_target"),
    (IMPROVING.replace("Add the second ball", "Unlike the reference picture, add a ball"), "leaks_target"),
    (IMPROVING.replace("Add the second ball", "Comparing both images, add a ball"), "leaks_target"),
    (IMPROVING.replace("Add the second ball", "As I was shown, add a ball"), "leaks_target"),
    (IMPROVING + " Done.", "text_outside_think"),
])
def test_improving_thinking_reasons(text, expected):
    assert reason(check_improving_thinking(text, {"min_chars": 200, "max_chars": 12000})) == expected


def test_reject_details_quote_the_start_of_the_output():
    problem = check_initial_thinking("gibberish zq zq zq " * 20, LIMITS)
    assert problem.reason == "missing_think_tags" and "'gibberish zq zq" in problem.detail


def test_teacher_text_is_an_ordinary_string_elsewhere():
    text = TeacherText("<think>x</think>", "length")
    assert text == "<think>x</think>" and isinstance(text, str)
    assert json.loads(json.dumps({"t": text})) == {"t": "<think>x</think>"}
    assert not hasattr(text + "", "finish_reason")  # string operations give plain strings back
