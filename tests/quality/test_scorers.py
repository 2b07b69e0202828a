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
    with pytest.raises(BackendUnavailable, match="both are unset"):
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
