"""The offline world's scorer measures its renderings: content errors lower alignment, blur lowers aesthetics."""

from __future__ import annotations

import asyncio

import numpy as np

from curation.backends.base import ImageInput
from curation.backends.scorers.offline import OfflineScorer
from curation.core.records import Reject
from curation.world.defects import Defect
from curation.world.render import render_scene
from curation.world.scene import sample_scene, scene_to_prompt


def scores(prompt, image):
    return asyncio.run(OfflineScorer().score(prompt, ImageInput.from_pil(image)))


def test_clean_renders_align_and_defects_cost_alignment_or_aesthetics():
    for seed in range(4):
        scene = sample_scene(np.random.default_rng([7, seed]))
        prompt = scene_to_prompt(scene)
        clean = scores(prompt, render_scene(scene, 128, seed))
        assert clean.alignment == 1.0 and clean.aesthetic > 2.0 and clean.unsafe is None
        wrong_colour = Defect("wrong_color", 0, {"color": next(c for c in ("red", "blue", "green", "yellow")
                                                              if c not in {g.color for g in scene.groups})})
        recoloured = scores(prompt, render_scene(scene, 128, seed, defects=[wrong_colour]))
        assert recoloured.alignment < 1.0
        blurred = scores(prompt, render_scene(scene, 128, seed, defects=[Defect("lost_detail", None, {})]))
        assert blurred.alignment == 1.0 and blurred.aesthetic < clean.aesthetic / 2  # content kept, detail lost


def test_embedding_finds_a_re_encoded_copy_and_tells_scenes_apart():
    a = sample_scene(np.random.default_rng(1))
    b = sample_scene(np.random.default_rng(2))
    image = render_scene(a, 128, 0)
    same = scores(scene_to_prompt(a), image).embedding
    jpeg = ImageInput.from_pil(image, "jpeg")
    again = asyncio.run(OfflineScorer().score(scene_to_prompt(a), jpeg)).embedding
    other = scores(scene_to_prompt(b), render_scene(b, 128, 0)).embedding
    assert np.dot(same, again) > 0.99 > np.dot(same, other)


def test_prompt_outside_the_world_is_a_named_reject():
    image = render_scene(sample_scene(np.random.default_rng(0)), 128, 0)
    result = scores("a photograph of a cat on a sofa", image)
    assert isinstance(result, Reject) and result.reason == "prompt_outside_grammar"


def test_simulated_preference_weighs_content_and_detail():
    """preference = 10 × alignment + aesthetic (documented as simulated): a content error and a blur
    both cost preference, so the improvement check's preference margin sees either defect."""
    from curation.backends.scorers.offline import PREFERENCE_ALIGNMENT_WEIGHT

    for seed in range(3):
        scene = sample_scene(np.random.default_rng([8, seed]))
        prompt = scene_to_prompt(scene)
        clean = scores(prompt, render_scene(scene, 128, seed))
        assert clean.preference == PREFERENCE_ALIGNMENT_WEIGHT * clean.alignment + clean.aesthetic
        assert clean.models["preference"]["id"] == "offline-world/analyser"
        colour = next(c for c in ("red", "blue", "green", "yellow") if c not in {g.color for g in scene.groups})
        recoloured = scores(prompt, render_scene(scene, 128, seed, defects=[Defect("wrong_color", 0, {"color": colour})]))
        blurred = scores(prompt, render_scene(scene, 128, seed, defects=[Defect("lost_detail", None, {})]))
        assert recoloured.preference < clean.preference and blurred.preference < clean.preference
