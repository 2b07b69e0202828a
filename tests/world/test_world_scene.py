"""The scene grammar: sampling, prompt text, and its exact parser."""

from collections import Counter

import numpy as np
import pytest

from curation.world.scene import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    InvalidScene,
    ObjectGroup,
    PromptOutsideGrammar,
    Scene,
    parse_prompt,
    sample_scene,
    scene_to_prompt,
)


def sampled_scenes(n: int, seed: int = 0) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng) for _ in range(n)]


def test_prompt_round_trip_over_1000_sampled_scenes():
    for scene in sampled_scenes(1000):
        assert parse_prompt(scene_to_prompt(scene)) == scene


def test_prompt_reads_naturally():
    scene = Scene(
        (ObjectGroup("ball", "red", 2, "small"), ObjectGroup("cube", "blue", 1, "large")),
        "left of",
        "wooden table",
    )
    assert scene_to_prompt(scene) == "a photo of two small red balls to the left of a large blue cube, on a wooden table"


def test_parser_tolerates_case_spaces_and_a_trailing_period():
    scene = parse_prompt("  A Photo of   THREE small  Green Stars  above a large pink ring ,  in a grey studio. ")
    assert scene == Scene(
        (ObjectGroup("star", "green", 3, "small"), ObjectGroup("ring", "pink", 1, "large")), "above", "grey studio"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   .  ", "empty"),
        ("a drawing of a small red ball, on a wooden table", "unparsable"),
        ("a photo of a small red ball on a wooden table", "unparsable"),
        ("a photo of a small red elephant, on a wooden table", "unknown_object"),
        ("a photo of two small red elephants, on a wooden table", "unknown_object"),
        ("a photo of a small magenta ball, on a wooden table", "unknown_color"),
        ("a photo of a medium red ball, on a wooden table", "unknown_size"),
        ("a photo of seven small red balls, on a wooden table", "unknown_count"),
        ("a photo of a small red ball, on the moon", "unknown_background"),
        ("a photo of two small red ball, on a wooden table", "unparsable"),
        ("a photo of a small red balls, on a wooden table", "unparsable"),
        ("a photo of a red ball, on a wooden table", "unparsable"),
        ("a photo of a small red ball and a large blue cube and a small green star, on beige paper", "too_many_groups"),
        ("a photo of a small red ball and a large red ball, on beige paper", "duplicate_groups"),
        ("a cozy cabin in the snow", "unparsable"),
    ],
)
def test_text_outside_the_grammar_raises_with_a_reason(text, reason):
    with pytest.raises(PromptOutsideGrammar) as caught:
        parse_prompt(text)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


def test_non_string_prompt_is_outside_the_grammar():
    with pytest.raises(PromptOutsideGrammar):
        parse_prompt(None)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ObjectGroup("elephant", "red", 1, "small"),
        lambda: ObjectGroup("ball", "magenta", 1, "small"),
        lambda: ObjectGroup("ball", "red", 0, "small"),
        lambda: ObjectGroup("ball", "red", 5, "small"),
        lambda: ObjectGroup("ball", "red", 1, "medium"),
        lambda: Scene((), None, "grey studio"),
        lambda: Scene((ObjectGroup("ball", "red", 1, "small"),), "left of", "grey studio"),
        lambda: Scene((ObjectGroup("ball", "red", 1, "small"),), None, "the moon"),
        lambda: Scene((ObjectGroup("ball", "red", 1, "small"), ObjectGroup("ball", "red", 2, "large")), None, "grey studio"),
    ],
)
def test_invalid_scenes_are_refused(build):
    with pytest.raises(InvalidScene):
        build()


def test_json_round_trip_and_bad_records():
    for scene in sampled_scenes(50, seed=3):
        assert Scene.from_json(scene.to_json()) == scene
    with pytest.raises(InvalidScene):
        Scene.from_json({"groups": [{"shape": "ball"}], "background": "grey studio"})


def test_sampling_is_seeded_and_covers_the_geneval_families():
    assert sampled_scenes(20, seed=9) == sampled_scenes(20, seed=9)
    scenes = sampled_scenes(1000, seed=1)
    families = Counter()
    for s in scenes:
        if len(s.groups) == 1:
            families["counting" if s.groups[0].count > 1 else "single"] += 1
        elif s.relation:
            families["position"] += 1
        elif s.groups[0].shape == s.groups[1].shape:
            families["same_shape_colour_attribution"] += 1
        else:
            families["two_objects"] += 1
    assert all(families[f] > 50 for f in ("single", "counting", "position", "two_objects", "same_shape_colour_attribution"))
    assert {g.shape for s in scenes for g in s.groups} == set(SHAPES)
    assert {g.color for s in scenes for g in s.groups} == set(COLORS)
    assert {s.background for s in scenes} == set(BACKGROUNDS)
    assert {g.count for s in scenes for g in s.groups} == {1, 2, 3, 4}
