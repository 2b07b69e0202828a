"""The offline teacher's texts: format, content, variation and no leaks."""

import re

import numpy as np
import pytest

from curation.world.analyse import analyse
from curation.world.defects import Defect, sample_defects
from curation.world.render import render_scene
from curation.world.scene import ObjectGroup, Scene, sample_scene, scene_to_prompt
from curation.world.thinking import (
    HEADER_EXPLANATION,
    HEADER_FINAL_PROMPT,
    HEADER_GUIDANCE,
    write_improving_thinking,
    write_initial_thinking,
)

LEAK_WORDS = ("target", "reference", "second image", "ground truth", "other image", "image b", "better image", "given image")
PAIR = Scene(
    (ObjectGroup("ball", "red", 2, "small"), ObjectGroup("cube", "blue", 1, "large")),
    "left of",
    "wooden table",
)
PROMPT = scene_to_prompt(PAIR)


@pytest.fixture(scope="module")
def better():
    return analyse(render_scene(PAIR, 192, seed=0))


def improving(defects, better, seed=0, prompt=PROMPT):
    initial = analyse(render_scene(PAIR, 192, seed=1, defects=defects))
    plan = write_initial_thinking(prompt, better, seed)
    return write_improving_thinking(prompt, plan, initial, better, seed)


def assert_four_parts(text: str) -> None:
    assert text.startswith("<think>\n") and text.endswith("\n</think>")
    assert text.count("<think>") == 1 and text.count("</think>") == 1
    positions = [text.find(h) for h in (HEADER_EXPLANATION, HEADER_GUIDANCE, HEADER_FINAL_PROMPT)]
    assert all(p > 0 for p in positions) and positions == sorted(positions)
    assert all(text.count(h) == 1 for h in (HEADER_EXPLANATION, HEADER_GUIDANCE, HEADER_FINAL_PROMPT))
    # Each header sits on a line of its own.
    lines = text.splitlines()
    assert {HEADER_EXPLANATION, HEADER_GUIDANCE, HEADER_FINAL_PROMPT} <= set(lines)
    opening = text[len("<think>"):positions[0]].strip()
    explanation = text[positions[0] + len(HEADER_EXPLANATION):positions[1]].strip()
    guidance = text[positions[1] + len(HEADER_GUIDANCE):positions[2]].strip()
    final = text[positions[2] + len(HEADER_FINAL_PROMPT):-len("</think>")].strip()
    assert len(opening) > 40 and "\n" not in opening  # one opening paragraph
    assert explanation.startswith("1. ") and guidance.startswith("1. ") and "2. " in guidance
    assert len(final) > 80 and final[0].isupper()


def assert_no_leak(text: str) -> None:
    body = text.replace(HEADER_FINAL_PROMPT, "").lower()
    for word in LEAK_WORDS:
        assert word not in body, word


def test_initial_thinking_plans_the_scene(better):
    text = write_initial_thinking(PROMPT, better, seed=0)
    assert text.startswith("<think>\n") and text.endswith("\n</think>")
    for needle in ("two small red balls", "one large blue cube", "to the left of", "left half", "right half", "oak", "upper left"):
        assert needle in text, needle
    assert_no_leak(text)


def test_initial_thinking_is_seeded_and_varied(better):
    assert write_initial_thinking(PROMPT, better, seed=3) == write_initial_thinking(PROMPT, better, seed=3)
    assert len({write_initial_thinking(PROMPT, better, seed=s) for s in range(12)}) >= 4


def test_a_prompt_outside_the_grammar_is_planned_from_the_image(better):
    text = write_initial_thinking("A cosy cabin in the snow at dusk", better, seed=1)
    assert text.startswith("<think>\n") and text.endswith("\n</think>")
    assert "cosy cabin" in text and "two small red balls" in text and "wooden table" in text


@pytest.mark.parametrize(
    ("defect", "needles"),
    [
        (Defect("wrong_count", 0, {"count": 3}), ("three small red balls", "exactly two", "Remove one")),
        (Defect("wrong_count", 0, {"count": 1}), ("one small red ball", "exactly two", "Add one")),
        (Defect("wrong_color", 1, {"color": "green"}), ("green", "saturated blue", "Repaint")),
        (Defect("swapped_relation", None, {}), ("to the right of", "Swap the two groups", "left half")),
        (Defect("missing_object", 1, {}), ("no blue cube", "Add a large blue cube", "right half")),
        (Defect("extra_object", None, {"shape": "star", "color": "yellow", "size": "small"}), ("yellow star", "Remove the yellow star")),
        (Defect("lost_detail", None, {}), ("flat", "blurred", "grain")),
    ],
)
def test_each_defect_is_named_concretely(defect, needles, better):
    text, found = improving([defect], better)
    assert_four_parts(text)
    assert_no_leak(text)
    assert [d.kind for d in found] == [defect.kind]
    for needle in needles:
        assert needle in text, needle


def test_no_difference_still_gives_a_four_part_refinement(better):
    text, found = write_improving_thinking(PROMPT, "", better, better, seed=2)
    assert found == []
    assert_four_parts(text)
    assert_no_leak(text)
    assert "light" in text and "texture" in text


def test_format_and_leaks_over_many_samples():
    rng = np.random.default_rng(5)
    texts = set()
    for i in range(60):
        scene = sample_scene(rng)
        prompt = scene_to_prompt(scene)
        defects = sample_defects(scene, rng, 0.8)
        better = analyse(render_scene(scene, 128, seed=2 * i))
        initial = analyse(render_scene(scene, 128, seed=2 * i + 1, defects=defects))
        plan = write_initial_thinking(prompt, better, seed=i)
        text, _ = write_improving_thinking(prompt, plan, initial, better, seed=i)
        assert_four_parts(text)
        assert_no_leak(text)
        assert_no_leak(plan)
        # The final prompt restates the request word for word.
        final = text.split(HEADER_FINAL_PROMPT)[1]
        assert prompt[0].upper() + prompt[1:] in final
        texts.add(re.sub(r"\d", "", text))
    assert len(texts) == 60


def test_the_improving_thinking_is_deterministic(better):
    defects = [Defect("wrong_count", 0, {"count": 3})]
    assert improving(defects, better, seed=4) == improving(defects, better, seed=4)


def test_outside_the_grammar_it_compares_the_images_alone(better):
    text, found = improving([Defect("extra_object", None, {"shape": "ring", "color": "pink", "size": "large"})], better,
                            prompt="something red and something blue on a table")
    assert_four_parts(text)
    assert [(d.kind, d.detail["shape"], d.detail["color"]) for d in found] == [("extra_object", "ring", "pink")]


def test_initial_thinking_must_be_text(better):
    with pytest.raises(TypeError):
        write_improving_thinking(PROMPT, None, better, better, seed=0)
