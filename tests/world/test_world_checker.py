"""The GenEval-style checker: right on clean renders, wrong on defective ones."""

import json

import numpy as np

from curation.world.checker import check
from curation.world.defects import Defect, sample_defects
from curation.world.render import render_scene
from curation.world.scene import ObjectGroup, Scene, sample_scene

CONTENT_KINDS = ("wrong_count", "wrong_color", "swapped_relation", "missing_object", "extra_object")
PAIR = Scene(
    (ObjectGroup("star", "orange", 3, "small"), ObjectGroup("ring", "teal", 1, "large")),
    "below",
    "grey studio",
)


def test_clean_renders_are_accurate():
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng) for _ in range(150)]
    results = [check(render_scene(scene, 128, seed=i), scene) for i, scene in enumerate(scenes)]
    accuracy = np.mean([r.accuracy for r in results])
    print(f"checker accuracy on 150 clean renders: {accuracy:.3f}")
    assert accuracy >= 0.98
    assert np.mean([r.score for r in results]) >= 0.99


def test_renders_with_content_defects_are_not():
    rng = np.random.default_rng(1)
    results = []
    for i in range(150):
        scene = sample_scene(rng)
        defects = sample_defects(scene, rng, 1.0, kinds=CONTENT_KINDS)
        if defects:
            results.append(check(render_scene(scene, 128, seed=i, defects=defects), scene))
    accuracy = np.mean([r.accuracy for r in results])
    print(f"checker accuracy on {len(results)} renders with content defects: {accuracy:.3f}")
    assert accuracy <= 0.05
    assert all(r.score < 1 for r in results if r.accuracy == 0)


def test_lost_detail_alone_keeps_the_content_right():
    # GenEval judges content, not rendering quality: a blurred but correct image passes.
    image = render_scene(PAIR, 192, seed=2, defects=[Defect("lost_detail", None, {})])
    assert check(image, PAIR).accuracy == 1.0


def test_each_check_points_at_the_defect():
    def result(*defects):
        return check(render_scene(PAIR, 192, seed=4, defects=list(defects)), PAIR)

    clean = result()
    assert clean.accuracy == 1.0 and clean.score == 1.0 and clean.relation_ok is True

    counted = result(Defect("wrong_count", 0, {"count": 2}))
    assert (counted.groups[0].count_ok, counted.groups[0].found_count, counted.groups[1].count_ok) == (False, 2, True)

    recoloured = result(Defect("wrong_color", 1, {"color": "red"}))
    assert not recoloured.groups[1].color_ok and recoloured.groups[0].color_ok

    swapped = result(Defect("swapped_relation", None, {}))
    assert swapped.relation_ok is False and swapped.groups[0].position_ok is False
    assert all(g.count_ok and g.color_ok for g in swapped.groups)

    missing = result(Defect("missing_object", 0, {}))
    assert missing.groups[0].found_count == 0 and missing.relation_ok is False

    extra = result(Defect("extra_object", None, {"shape": "cube", "color": "pink", "size": "small"}))
    assert extra.unexpected == (("cube", "pink", 1),) and extra.accuracy == 0.0
    assert all(g.passed() for g in extra.groups)

    json.dumps(extra.to_json())


def test_position_is_not_judged_without_a_relation():
    scene = Scene((ObjectGroup("ball", "green", 1, "large"), ObjectGroup("cube", "purple", 2, "small")), None, "white wall")
    result = check(render_scene(scene, 160, seed=0), scene)
    assert result.relation_ok is None and all(g.position_ok is None for g in result.groups)
    assert result.accuracy == 1.0
