"""The analyser: shapes, colours, sizes, backgrounds and detail, measured blind."""

import json

import numpy as np
import pytest
from PIL import Image

from curation.world.analyse import Observation, analyse
from curation.world.render import render_scene
from curation.world.scene import BACKGROUNDS, COLORS, SHAPES, SIZES, ObjectGroup, Scene


@pytest.mark.parametrize("size", [128, 320])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_colour_and_size_is_recognised(shape, size):
    backgrounds = list(BACKGROUNDS)
    for i, color in enumerate(COLORS):
        for object_size in SIZES:
            scene = Scene((ObjectGroup(shape, color, 2, object_size),), None, backgrounds[i % len(backgrounds)])
            seen = analyse(render_scene(scene, size, seed=i))
            assert [(o.shape, o.color, o.size) for o in seen.objects] == [(shape, color, object_size)] * 2, scene


def test_backgrounds_are_named():
    for i, background in enumerate(BACKGROUNDS):
        scene = Scene((ObjectGroup("ball", "red", 1, "small"),), None, background)
        assert analyse(render_scene(scene, 160, seed=i)).background == background


def test_an_empty_backdrop_has_no_objects():
    plain = Image.new("RGB", (200, 150), (200, 196, 190))
    seen = analyse(plain)
    assert seen.objects == () and seen.detail == 0.0
    assert (seen.width, seen.height) == (200, 150)


def test_positions_are_fractions_of_the_frame():
    scene = Scene((ObjectGroup("cube", "teal", 1, "large"), ObjectGroup("star", "orange", 1, "small")), "above", "white wall")
    seen = analyse(render_scene(scene, 256, seed=3))
    cube, star = seen.of("cube", "teal")[0], seen.of("star", "orange")[0]
    assert cube.centroid[1] < 0.5 < star.centroid[1]
    for obj in seen.objects:
        x0, y0, x1, y1 = obj.bbox
        assert 0 <= x0 < obj.centroid[0] < x1 <= 1 and 0 <= y0 < obj.centroid[1] < y1 <= 1


def test_observation_json_round_trip():
    scene = Scene((ObjectGroup("ring", "purple", 3, "small"),), None, "grey studio")
    seen = analyse(render_scene(scene, 128, seed=0))
    data = json.loads(json.dumps(seen.to_json()))
    assert Observation.from_json(data) == seen
    assert seen.counts() == {("ring", "purple"): 3}


def test_any_pil_mode_is_accepted():
    scene = Scene((ObjectGroup("pyramid", "yellow", 1, "large"),), None, "beige paper")
    image = render_scene(scene, 128, seed=1)
    assert analyse(image.convert("RGBA")).counts() == analyse(image).counts()


def test_detail_tells_sharp_from_blurred_renders():
    from curation.world.defects import Defect

    scene = Scene((ObjectGroup("ball", "blue", 2, "large"),), None, "wooden table")
    for seed in range(5):
        sharp = analyse(render_scene(scene, 128, seed=seed))
        soft = analyse(render_scene(scene, 128, seed=seed, defects=[Defect("lost_detail", None, {})]))
        assert soft.background_detail < 0.5 * sharp.background_detail
        assert soft.detail < sharp.detail
        assert np.isfinite([sharp.detail, soft.detail]).all()
