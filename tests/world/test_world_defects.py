"""Defects: sampling rules, validation, matching, and that each kind is visible to `analyse`."""

from collections import Counter

import numpy as np
import pytest

from curation.world.analyse import analyse
from curation.world.checker import centroid
from curation.world.defects import (
    DEFECT_KINDS,
    Defect,
    FoundDefect,
    InvalidDefect,
    apply_defects,
    match_defects,
    sample_defects,
)
from curation.world.render import render_scene
from curation.world.scene import ObjectGroup, Scene, sample_scene

PAIR = Scene(
    (ObjectGroup("ball", "red", 2, "small"), ObjectGroup("cube", "blue", 1, "large")),
    "left of",
    "beige paper",
)
SIZE, SEED = 192, 11


@pytest.fixture(scope="module")
def clean():
    return analyse(render_scene(PAIR, SIZE, SEED))


def measured(defect: Defect):
    return analyse(render_scene(PAIR, SIZE, SEED, [defect]))


def test_wrong_count_changes_the_measured_count(clean):
    seen = measured(Defect("wrong_count", 0, {"count": 3}))
    assert len(clean.of("ball", "red")) == 2 and len(seen.of("ball", "red")) == 3


def test_wrong_color_changes_the_measured_colour(clean):
    seen = measured(Defect("wrong_color", 1, {"color": "yellow"}))
    assert clean.of("cube", "blue") and not seen.of("cube", "blue")
    assert len(seen.of("cube", "yellow")) == 1


def test_swapped_relation_flips_the_measured_sides(clean):
    seen = measured(Defect("swapped_relation", None, {}))
    assert centroid(clean.of("ball", "red"))[0] < centroid(clean.of("cube", "blue"))[0]
    assert centroid(seen.of("ball", "red"))[0] > centroid(seen.of("cube", "blue"))[0]


def test_missing_object_removes_a_group(clean):
    seen = measured(Defect("missing_object", 1, {}))
    assert clean.of("cube", "blue") and not seen.of("cube", "blue")
    assert len(seen.of("ball", "red")) == 2


def test_extra_object_adds_an_unrequested_object(clean):
    seen = measured(Defect("extra_object", None, {"shape": "star", "color": "green", "size": "large"}))
    assert not clean.of("star", "green")
    assert [o.size for o in seen.of("star", "green")] == ["large"]
    assert len(seen.objects) == len(clean.objects) + 1


def test_lost_detail_flattens_and_blurs(clean):
    seen = measured(Defect("lost_detail", None, {}))
    assert seen.counts() == clean.counts()  # the content survives...
    assert seen.detail < 0.3 * clean.detail  # ...but the surfaces are flat
    assert seen.background_detail < 0.3 * clean.background_detail  # ...and the image is blurred


def test_every_kind_is_covered_by_a_visibility_test():
    tested = {"wrong_count", "wrong_color", "swapped_relation", "missing_object", "extra_object", "lost_detail"}
    assert tested == set(DEFECT_KINDS)


def test_sampling_respects_the_rate_and_the_compatibility_rules():
    rng = np.random.default_rng(0)
    sizes = Counter()
    for _ in range(3000):
        scene = sample_scene(rng)
        defects = sample_defects(scene, rng, 0.7)
        sizes[len(defects)] += 1
        apply_defects(scene, defects)  # raises if the combination is not allowed
        kinds = [d.kind for d in defects]
        assert len(set(kinds)) == len(kinds)
        groups = [d.group for d in defects if d.group is not None]
        assert len(set(groups)) == len(groups)
        if "missing_object" in kinds:
            assert len(scene.groups) == 2 and "swapped_relation" not in kinds
        if "swapped_relation" in kinds:
            assert scene.relation is not None
        for d in defects:
            if d.kind == "wrong_count":
                assert abs(d.detail["count"] - scene.groups[d.group].count) == 1 and d.detail["count"] >= 1
            if d.kind == "wrong_color":
                assert d.detail["color"] not in {g.color for g in scene.groups}
            if d.kind == "extra_object":
                assert d.detail["shape"] not in {g.shape for g in scene.groups}
                assert d.detail["color"] not in {g.color for g in scene.groups}
    defective = 3000 - sizes[0]
    assert 0.66 < defective / 3000 < 0.74
    assert 0.22 < sizes[2] / defective < 0.38
    assert set(sizes) == {0, 1, 2}


def test_sampling_edges():
    rng = np.random.default_rng(1)
    single = Scene((ObjectGroup("ball", "red", 1, "small"),), None, "white wall")
    assert all(sample_defects(single, rng, 0.0) == [] for _ in range(50))
    assert all(sample_defects(single, rng, 1.0) for _ in range(50))
    # Kinds that cannot apply to a one-group scene without a relation leave nothing to inject.
    assert sample_defects(single, rng, 1.0, kinds=("missing_object", "swapped_relation")) == []
    only = {d.kind for _ in range(100) for d in sample_defects(PAIR, rng, 1.0, kinds=("lost_detail", "wrong_color"))}
    assert only == {"lost_detail", "wrong_color"}
    with pytest.raises(ValueError):
        sample_defects(single, rng, 1.5)
    with pytest.raises(InvalidDefect):
        sample_defects(single, rng, 0.5, kinds=("smudge",))


@pytest.mark.parametrize(
    ("scene", "defects"),
    [
        (PAIR, [Defect("wrong_count", 0, {"count": 4})]),  # not ±1
        (PAIR, [Defect("wrong_count", 2, {"count": 1})]),  # no such group
        (PAIR, [Defect("wrong_color", 0, {"color": "blue"})]),  # colour already used
        (PAIR, [Defect("missing_object", 0, {}), Defect("swapped_relation", None, {})]),
        (PAIR, [Defect("missing_object", 0, {}), Defect("wrong_count", 0, {"count": 3})]),
        (PAIR, [Defect("lost_detail", None, {}), Defect("lost_detail", None, {})]),
        (PAIR, [Defect("extra_object", None, {"shape": "ball", "color": "green"})]),  # shape in scene
        (Scene((ObjectGroup("ball", "red", 1, "small"),), None, "white wall"), [Defect("missing_object", 0, {})]),
        (Scene((ObjectGroup("ball", "red", 1, "small"), ObjectGroup("star", "teal", 1, "small")), None, "white wall"),
         [Defect("swapped_relation", None, {})]),
    ],
)
def test_incompatible_defects_are_refused(scene, defects):
    with pytest.raises(InvalidDefect):
        apply_defects(scene, defects)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Defect("smudge", None, {}),
        lambda: Defect("wrong_count", None, {"count": 2}),
        lambda: Defect("wrong_count", 0, {}),
        lambda: Defect("wrong_color", 0, {"color": "magenta"}),
        lambda: Defect("lost_detail", 0, {}),
        lambda: Defect("extra_object", None, {"shape": "ball"}),
    ],
)
def test_malformed_defects_are_refused(build):
    with pytest.raises(InvalidDefect):
        build()


def test_defect_json_round_trip():
    rng = np.random.default_rng(2)
    for _ in range(100):
        for d in sample_defects(sample_scene(rng), rng, 1.0):
            assert Defect.from_json(d.to_json()) == d
    with pytest.raises(InvalidDefect):
        Defect.from_json({"group": 0})


def test_matching_rule():
    injected = [
        Defect("wrong_count", 0, {"count": 3}),
        Defect("extra_object", None, {"shape": "star", "color": "green", "size": "large"}),
    ]
    exact = [
        FoundDefect("wrong_count", 0, {"count": 3, "expected": 2}),
        FoundDefect("extra_object", None, {"shape": "star", "color": "green", "size": "small", "count": 1}),
    ]
    assert match_defects(exact, injected) == (2, 2, 2)
    wrong_detail = [FoundDefect("wrong_count", 0, {"count": 1}), FoundDefect("wrong_count", 1, {"count": 3})]
    assert match_defects(wrong_detail, injected) == (0, 2, 2)
    twice = [FoundDefect("wrong_count", 0, {"count": 3})] * 2
    assert match_defects(twice, injected) == (1, 2, 2)
    assert match_defects([], []) == (0, 0, 0)
