"""Tiny random models, built once per session; a test that plants scores gets its own copy."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from tests.quality.tiny_models import build_tiny_classifier, build_tiny_clip, build_tiny_siglip


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-scorers")
    return {"clip": build_tiny_clip(root / "clip"), "siglip": build_tiny_siglip(root / "siglip"),
            "classifier": build_tiny_classifier(root / "classifier")}


@pytest.fixture
def model_copy(tiny_models, tmp_path):
    def copy(name):
        return shutil.copytree(tiny_models[name], tmp_path / f"{name}-copy")
    return copy


def noise_images(count, seed=0, side=40):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(count)]
