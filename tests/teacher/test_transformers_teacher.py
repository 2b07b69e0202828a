"""`teacher=transformers`: a tiny random Qwen2.5-VL from a local folder, in this process.

Random weights write gibberish: these tests check the plumbing (images reach the model at the
budgeted size, tokens are counted, lineage is filled, seeds reproduce) and that validation
rejects the gibberish with the right reason.
"""

from __future__ import annotations

import asyncio

import pytest
from hydra.utils import instantiate
from PIL import Image

from curation.backends.base import BackendUnavailable, ImageInput
from curation.core.config import load_config
from tests.helpers import build
from tests.teacher.helpers import assert_each_sample_once, improving_request, initial_request, rejects

MAX_TOKENS = 12


def teacher(model_dir, *overrides: str):
    cfg = load_config("config", ["teacher=transformers", f"teacher.model_dir={model_dir}",
                                 f"teacher.sampling.max_tokens={MAX_TOKENS}", *overrides])
    backend = instantiate(cfg.teacher, _convert_="all")
    backend.check()
    return backend


def ask(backend, *requests):
    async def go():
        out = [await backend.chat(r) for r in requests]
        await backend.aclose()
        return out

    return asyncio.run(go())


def test_images_reach_the_model_at_the_budgeted_size_and_lineage_is_filled(tiny_qwen):
    picture = ImageInput.from_pil(Image.new("RGB", (448, 448), "orange"))
    small_backend, large_backend = teacher(tiny_qwen, "teacher.max_pixels=50176"), teacher(tiny_qwen,
                                                                                           "teacher.max_pixels=200704")
    small, = ask(small_backend, initial_request("a ball", picture, 3))
    large, = ask(large_backend, initial_request("a ball", picture, 3))
    # 448² → 224² (8×8 cells of 28 px) under 50176 pixels, kept at 448² (16×16) under 200704.
    assert small.lineage["image_tokens"] == 64 and large.lineage["image_tokens"] == 256
    # Tokens are the run's accounting (summary), not lineage: one call each here.
    assert large_backend.summary()["prompt_tokens"] - small_backend.summary()["prompt_tokens"] == 256 - 64
    for output, backend in ((small, small_backend), (large, large_backend)):
        assert set(output.lineage) == {"finish_reason", "image_tokens"}  # the stage adds its template
        completion_tokens = backend.summary()["completion_tokens"]
        assert 0 < completion_tokens <= MAX_TOKENS
        assert output.lineage["finish_reason"] in ("stop", "length")
        if output.lineage["finish_reason"] == "length":
            assert completion_tokens == MAX_TOKENS


def test_both_images_of_an_improving_request_reach_the_model(tiny_qwen):
    backend = teacher(tiny_qwen, "teacher.max_pixels=50176")
    request = improving_request("a ball", "<think>a plan</think>", ImageInput.from_pil(Image.new("RGB", (448, 448))),
                                ImageInput.from_pil(Image.new("RGB", (224, 112))), seed=5)
    output, = ask(backend, request)
    assert output.lineage["image_tokens"] == 64 + 32  # 8×8 cells and 8×4 cells


def test_the_same_seed_gives_the_same_sampled_text(tiny_qwen):
    picture = ImageInput.from_pil(Image.new("RGB", (112, 112), "teal"))
    backend = teacher(tiny_qwen, "teacher.sampling.temperature=1.0")
    first, second = ask(backend, initial_request("a ball", picture, 11),
                        initial_request("a ball", picture, 11))
    assert first.text == second.text and first.lineage == second.lineage
    assert backend.summary()["completion_tokens"] > 0


def test_a_run_rejects_the_gibberish_with_the_right_reason(tiny_qwen, tmp_path):
    out = build(tmp_path, "recipe=initial_thinking", "n=3", "teacher=transformers", f"teacher.model_dir={tiny_qwen}",
                f"teacher.sampling.max_tokens={MAX_TOKENS}", "teacher.sampling.temperature=0",
                "stages.initial_thinking.validation_attempts=2", "checker=none")
    mode = "initial_thinking_generation_learning"
    assert_each_sample_once(out, mode, 3)
    found = rejects(out, mode)
    assert len(found) == 3
    # Greedy gibberish never closes a <think> tag within 12 tokens: cut at the limit.
    assert {(r["stage"], r["reason"]) for r in found} == {("initial_thinking", "truncated")}
    assert all("(after 2 attempts)" in r["detail"] for r in found)


def test_a_folder_without_a_model_is_refused_in_one_sentence(tmp_path):
    with pytest.raises(BackendUnavailable, match="is not a Hugging Face model folder") as caught:
        build(tmp_path, "recipe=initial_thinking", "n=1", "teacher=transformers", f"teacher.model_dir={tmp_path}")
    assert "\n" not in str(caught.value)
