"""The Qwen3-VL teacher recipes: one token per 32×32 pixels (16-pixel patches merged 2×2), checked
against a tiny random Qwen3-VL's real processor and through the server teacher."""

from __future__ import annotations

import asyncio

import pytest
from hydra.utils import instantiate
from PIL import Image

from curation.backends.base import ImageInput, InitialThinkingRequest
from curation.core.config import load_config
from tests.helpers import build
from tests.support.tiny_qwen import build_tiny_qwen3_vl
from tests.teacher.helpers import rows, server_teacher


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory):
    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3-vl"))


def test_the_transformers_recipe_sends_images_on_qwen3_vls_32_pixel_grid(tiny_qwen3):
    cfg = load_config("config", ["teacher=transformers_qwen3_vl", f"teacher.model_dir={tiny_qwen3}",
                                 "teacher.max_pixels=65536", "teacher.sampling.max_tokens=4"])
    backend = instantiate(cfg.teacher, _convert_="all")
    backend.check()
    picture = ImageInput.from_pil(Image.new("RGB", (448, 224), "orange"))

    async def go():
        try:
            return await backend.initial_thinking(InitialThinkingRequest("a ball", picture, 3))
        finally:
            await backend.aclose()

    output = asyncio.run(go())
    # 448×224 within 65,536 pixels on the 32-grid: 352×160 → 11×5 cells of 32 px = 55 tokens, as the
    # model's own processor counts them (on Qwen2.5-VL's 28-grid it would be 12×6 = 72).
    assert output.lineage["image_tokens"] == (352 // 32) * (160 // 32)


def test_the_server_recipe_sizes_images_for_qwen3_vl(tmp_path, fake):
    endpoint, url = fake
    teacher = ["teacher=vllm_server_qwen3_vl", *server_teacher(url)[1:]]  # its recipe, the fake's address
    out = build(tmp_path, "recipe=initial_thinking", "n=2", "image_size=200", *teacher)
    for row in rows(out, "initial_thinking_generation_learning"):
        lineage = row["lineage"]["stages"]["initial_thinking"]
        assert lineage["image_sizes"] == ["192x192"]  # 200 → the 32-pixel grid (Qwen2.5-VL's: 196x196)
        assert lineage["backend"]["settings"]["pixels"] == {"max_pixels": 524288, "min_pixels": 4096, "multiple": 32}
