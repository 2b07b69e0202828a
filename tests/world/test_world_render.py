"""The renderer: determinism, layout rules, sizes and speed."""

import itertools
import time

import numpy as np
import pytest

from curation.world.analyse import analyse
from curation.world.checker import check_observation
from curation.world.defects import Defect, apply_defects
from curation.world.render import InvalidRenderSize, plan_layout, render_scene
from curation.world.scene import ObjectGroup, Scene, sample_scene

PAIR = Scene(
    (ObjectGroup("star", "red", 4, "large"), ObjectGroup("ring", "blue", 3, "small")),
    "left of",
    "wooden table",
)


def test_same_inputs_give_identical_pixels():
    defects = [Defect("wrong_count", 0, {"count": 3}), Defect("lost_detail", None, {})]
    for size in (128, 256):
        first = render_scene(PAIR, size, seed=7, defects=defects)
        again = render_scene(PAIR, size, seed=7, defects=defects)
        assert first.mode == "RGB" and first.size == (size, size)
        assert first.tobytes() == again.tobytes()


def test_a_different_seed_gives_a_different_layout():
    one, other = analyse(render_scene(PAIR, 256, seed=1)), analyse(render_scene(PAIR, 256, seed=2))
    assert sorted(o.centroid for o in one.objects) != sorted(o.centroid for o in other.objects)
    # ...while both still show the same content.
    assert one.counts() == other.counts() == {("star", "red"): 4, ("ring", "blue"): 3}


def test_the_composition_does_not_depend_on_resolution():
    small, large = analyse(render_scene(PAIR, 128, seed=5)), analyse(render_scene(PAIR, 512, seed=5))
    for a, b in zip(small.objects, large.objects):
        assert np.allclose(a.centroid, b.centroid, atol=0.02)


@pytest.mark.parametrize("size", [64, 1024])
def test_extreme_sizes_render(size):
    image = render_scene(PAIR, size, seed=0)
    assert image.size == (size, size)


@pytest.mark.parametrize("size", [63, 1025, 256.0, True])
def test_sizes_outside_the_range_are_refused(size):
    with pytest.raises(InvalidRenderSize):
        render_scene(PAIR, size, seed=0)


def test_objects_never_overlap_and_stay_inside_the_frame():
    rng = np.random.default_rng(0)
    crowded = [
        Scene((ObjectGroup("cube", "green", 4, "large"), ObjectGroup("ball", "pink", 4, "large")), relation, "grey studio")
        for relation in ("left of", "right of", "above", "below", None)
    ]
    # The most crowded half: five large objects plus an extra one.
    worst = [Defect("wrong_count", 0, {"count": 5}), Defect("extra_object", None, {"shape": "star", "color": "blue", "size": "large"})]
    cases = [(scene, worst) for scene in crowded] + [(sample_scene(rng), []) for _ in range(200)]
    for seed, (scene, defects) in enumerate(cases):
        for layout_seed in range(5):
            layout = plan_layout(apply_defects(scene, defects), scene.relation, np.random.default_rng([seed, layout_seed]))
            for a in layout:
                assert a.diameter / 2 <= a.cx <= 1 - a.diameter / 2
                assert a.diameter / 2 <= a.cy <= 1 - a.diameter / 2
            for a, b in itertools.combinations(layout, 2):
                # Boxes (not just discs) stay apart: no silhouette can touch another.
                apart = max(abs(a.cx - b.cx), abs(a.cy - b.cy)) >= (a.diameter + b.diameter) / 2
                assert apart, (scene, a, b)


def test_the_relation_is_respected():
    rng = np.random.default_rng(4)
    scenes = [s for s in (sample_scene(rng) for _ in range(300)) if s.relation][:60]
    for i, scene in enumerate(scenes):
        assert check_observation(analyse(render_scene(scene, 128, seed=i)), scene).relation_ok


def test_render_is_fast():
    scene = Scene((ObjectGroup("cube", "green", 3, "large"), ObjectGroup("star", "pink", 2, "small")), "above", "grey studio")
    render_scene(scene, 256, seed=0)
    start = time.perf_counter()
    for seed in range(20):
        render_scene(scene, 256, seed=seed)
    per_image = (time.perf_counter() - start) / 20
    # ~10 ms on one core; the bound leaves room for a loaded CI machine.
    assert per_image < 0.1
