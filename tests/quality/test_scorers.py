"""The transformers scorer on tiny random models: planted scores come back, thresholds decide exactly."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from curation.backends.base import BackendUnavailable, ImageInput
from curation.backends.scorers.alignment import AlignmentModel
from curation.backends.scorers.transformers_scorer import TransformersScorer
from curation.pipeline.stages.quality_checks import failed_check
from tests.quality.conftest import noise_images
from tests.quality.tiny_models import plant_aesthetic_head, plant_clip_alignment, plant_unsafe

PROMPTS = ["a red ball", "two blue cubes left of a star", "a green ring on wood", "three stars",
           "a yellow pyramid below a purple ball", "a cube"]


def score_all(scorer, prompts, images):
    async def main():
        try:
            return await asyncio.gather(*(scorer.score(p, ImageInput.from_pil(i)) for p, i in zip(prompts, images)))
        finally:
            await scorer.aclose()
    return asyncio.run(main())


def clip_embeddings(folder, prompts, images):
    model = AlignmentModel(folder, device="cpu", dtype=torch.float32, text_padding="longest")
    return model(prompts, images).image_embeds.numpy()


@pytest.mark.parametrize("head_file,laion_shape", [("head.safetensors", False), ("head.pth", True)])
def test_planted_scores_come_back_and_thresholds_pick_exactly_the_planted_rows(model_copy, tmp_path, head_file,
                                                                                laion_shape):
    images = noise_images(len(PROMPTS))
    clip, classifier = model_copy("clip"), model_copy("classifier")
    alignment = [0.45, 0.12, 0.50, 0.35, 0.05, 0.40]
    aesthetic = [6.0, 6.5, 3.0, 7.0, 5.5, 4.0]
    unsafe_logit = [-4.0, -3.0, -2.0, 3.0, -5.0, 2.5]
    plant_clip_alignment(clip, PROMPTS, images, alignment)
    head = tmp_path / head_file
    plant_aesthetic_head(head, clip_embeddings(clip, PROMPTS, images), aesthetic, laion_shape=laion_shape)
    plant_unsafe(classifier, images, unsafe_logit)

    scorer = TransformersScorer(model=str(clip), aesthetic_head=str(head), safety_model=str(classifier),
                                unsafe_labels=["nsfw"], device="cpu", max_batch_size=4, max_wait_ms=50)
    scorer.check()
    results = score_all(scorer, PROMPTS, images)
    assert scorer.batcher.batch_sizes == [4, 2]  # six concurrent requests, two forward passes

    np.testing.assert_allclose([r.alignment for r in results], alignment, atol=1e-4)
    np.testing.assert_allclose([r.aesthetic for r in results], aesthetic, atol=1e-3)
    np.testing.assert_allclose([r.unsafe for r in results], 1 / (1 + np.exp(-np.array(unsafe_logit))), atol=1e-5)
    for r in results:
        assert abs(np.linalg.norm(r.embedding) - 1) < 1e-5
        assert set(r.models) == {"alignment", "aesthetic", "unsafe"}
        assert r.models["aesthetic"]["revision"].startswith("sha256-")

    thresholds = {"min_alignment": 0.3, "min_aesthetic": 5.0, "max_unsafe": 0.5}
    decisions = [failed_check(r.measured(), thresholds) for r in results]
    assert [d and d[0] for d in decisions] == [None, "low_alignment", "low_aesthetic", "unsafe", "low_alignment",
                                               "low_aesthetic"]
    # Moving a threshold past a planted value moves exactly that row.
    looser = [failed_check(r.measured(), thresholds | {"min_alignment": 0.1}) for r in results]
    assert [d and d[0] for d in looser] == [None, None, "low_aesthetic", "unsafe", "low_alignment", "low_aesthetic"]


def test_siglip_alignment_is_the_cosine_of_its_own_embeddings(tiny_models):
    images = noise_images(3, seed=3)
    prompts = PROMPTS[:3]
    scorer = TransformersScorer(model=str(tiny_models["siglip"]), text_padding="max_length", device="cpu")
    scorer.check()
    results = score_all(scorer, prompts, images)

    from transformers import AutoModel, AutoProcessor
    model = AutoModel.from_pretrained(tiny_models["siglip"])
    processor = AutoProcessor.from_pretrained(tiny_models["siglip"])
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding="max_length", truncation=True,
                       max_length=16)
    with torch.inference_mode():
        out = model(**inputs)
    image = torch.nn.functional.normalize(out.image_embeds, dim=-1)
    text = torch.nn.functional.normalize(out.text_embeds, dim=-1)
    np.testing.assert_allclose([r.alignment for r in results], (image * text).sum(-1).numpy(), atol=1e-5)
    np.testing.assert_allclose(np.array([r.embedding for r in results]), image.numpy(), atol=1e-5)
    assert all(r.aesthetic is None and r.unsafe is None for r in results)


def test_identity_names_each_model_and_revision(tiny_models, tmp_path):
    scorer = TransformersScorer(model=str(tiny_models["clip"]), model_id="openai/clip-vit-large-patch14",
                                revision="abc123", safety_model=str(tiny_models["classifier"]))
    identity = scorer.identity()
    assert identity["id"] == "openai/clip-vit-large-patch14" and identity["revision"] == "abc123"
    assert identity["settings"]["models"]["unsafe"]["revision"].startswith("local-")
    assert "max_batch_size" not in str(identity)  # batching does not change results


def test_misconfigurations_are_one_sentence(tiny_models, tmp_path):
    with pytest.raises(BackendUnavailable, match="all are unset"):
        TransformersScorer()
    with pytest.raises(BackendUnavailable, match="not a Hugging Face model folder"):
        TransformersScorer(model=str(tmp_path))
    with pytest.raises(BackendUnavailable, match="does not have"):
        TransformersScorer(safety_model=str(tiny_models["classifier"]), unsafe_labels=["porn"], device="cpu").check()
    with pytest.raises(BackendUnavailable, match="image–text model"):
        TransformersScorer(model=str(tiny_models["classifier"]), device="cpu").check()
    wrong = tmp_path / "head.safetensors"
    plant_aesthetic_head(wrong, np.eye(5), [1, 2, 3, 4, 5])  # a head for 5-d embeddings; tiny CLIP gives 24
    with pytest.raises(BackendUnavailable, match="takes 5-d embeddings"):
        TransformersScorer(model=str(tiny_models["clip"]), aesthetic_head=str(wrong), device="cpu").check()


def test_thresholds_are_inclusive():
    limits = {"min_alignment": 0.3, "min_aesthetic": 5.0, "max_unsafe": 0.5}
    assert failed_check({"alignment": 0.3, "aesthetic": 5.0, "unsafe": 0.5}, limits) is None
    assert failed_check({"alignment": 0.3, "aesthetic": 4.999, "unsafe": 0.5}, limits)[0] == "low_aesthetic"
    assert failed_check({"alignment": 0.3, "aesthetic": 5.0, "unsafe": 0.5001}, limits)[0] == "unsafe"


def test_preference_is_the_clip_logit_of_a_pickscore_shaped_model(model_copy, tmp_path):
    """PickScore's score: logit_scale.exp() × the cosine of the normalised embeddings. A tiny CLIP with
    planted cosines and a chosen temperature gives back exactly that; its processor may live in a
    folder of its own (PickScore_v1 ships none: it uses laion/CLIP-ViT-H-14's)."""
    import math
    import shutil

    from transformers import CLIPModel

    images = noise_images(4, seed=5)
    prompts = PROMPTS[:4]
    cosines = [0.31, -0.2, 0.05, 0.6]
    folder = model_copy("clip")
    plant_clip_alignment(folder, prompts, images, cosines)
    model = CLIPModel.from_pretrained(folder)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))  # PickScore's learnt temperature is ~100
    model.save_pretrained(folder)
    processor = tmp_path / "processor"
    processor.mkdir()
    for path in list(folder.iterdir()):  # the model folder keeps only config and weights, as PickScore_v1
        if path.name not in ("config.json", "model.safetensors"):
            shutil.move(str(path), processor / path.name)

    with pytest.raises(BackendUnavailable, match="holds no CLIP processor"):
        TransformersScorer(preference_model=str(folder), device="cpu").check()
    scorer = TransformersScorer(preference_model=str(folder), preference_processor=str(processor),
                                preference_id="yuvalkirstain/PickScore_v1", device="cpu", max_batch_size=4)
    scorer.check()
    results = score_all(scorer, prompts, images)
    np.testing.assert_allclose([r.preference for r in results], [100 * c for c in cosines], atol=1e-2)
    assert all(r.alignment is None and r.embedding is None for r in results)  # no alignment model set
    assert all(r.measured() == {"preference": r.preference} for r in results)
    assert results[0].models["preference"]["id"] == "yuvalkirstain/PickScore_v1"
    identity = scorer.identity()
    assert identity["id"] == "yuvalkirstain/PickScore_v1" and identity["settings"]["preference_processor"]


def test_preference_misconfigurations_are_one_sentence(tiny_models, tmp_path):
    with pytest.raises(BackendUnavailable, match="CLIP-shaped reward model"):
        TransformersScorer(preference_model=str(tiny_models["siglip"]), device="cpu").check()
    with pytest.raises(BackendUnavailable, match="preference_processor=.* is not a folder"):
        TransformersScorer(preference_model=str(tiny_models["clip"]), preference_processor=str(tmp_path / "none"))
    with pytest.raises(BackendUnavailable, match="not a Hugging Face model folder"):
        TransformersScorer(preference_model=str(tmp_path))


def test_improvement_rejects_a_preference_margin_below_its_threshold_by_name():
    from curation.pipeline.stages.base import StageContext
    from curation.pipeline.stages.improvement import Improvement

    def decide(settings, hq, initial):
        ctx = StageContext(backend=None, store=None, seed=0, settings=settings)
        return asyncio.run(Improvement().run({"hq_image_quality": hq, "initial_image_quality": initial}, ctx))

    both = {"min_margin": 0.0, "min_preference_margin": 0.5}
    kept = decide(both, {"alignment": 0.3, "preference": 21.0}, {"alignment": 0.2, "preference": 20.5})
    assert kept.lineage == {"improved_alignment": 0.3, "initial_alignment": 0.2, "gain": pytest.approx(0.1),
                            "min_margin": 0.0, "improved_preference": 21.0, "initial_preference": 20.5,
                            "preference_gain": 0.5, "min_preference_margin": 0.5}  # the margin is inclusive
    worse = decide(both, {"alignment": 0.3, "preference": 21.0}, {"alignment": 0.2, "preference": 20.9})
    assert worse.reason == "preference_not_better" and "preference improved 21.0000 - initial 20.9000" in worse.detail
    first = decide(both, {"alignment": 0.1, "preference": 21.0}, {"alignment": 0.2, "preference": 20.0})
    assert first.reason == "improved_not_better"  # alignment is checked first
    unmeasured = decide(both, {"alignment": 0.3}, {"alignment": 0.2})
    assert unmeasured.reason == "score_not_measured" and "min_preference_margin=0.5" in unmeasured.detail
    off = decide({"min_margin": None, "min_preference_margin": 0.5}, {"preference": 19.0}, {"preference": 20.0})
    assert off.reason == "preference_not_better"
    assert decide({"min_margin": None}, {"preference": 19.0}, {"preference": 20.0}).lineage["preference_gain"] == -1.0
