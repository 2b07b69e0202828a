"""One small offline dataset for the publishing tests, with rejects, and copies to break."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from curation.writer import card, manifest
from curation.world.scene import sample_scene, scene_to_prompt
from tests.helpers import build

# Prompts the offline world can draw, one it cannot (a reject with a reason), and an empty one (a gate reject).
OUTSIDE_GRAMMAR = "a <script>window.__pwned = 1</script> dragon reading a newspaper"
N_PROMPTS = 9


@pytest.fixture(scope="session")
def publish_dataset(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("publish")
    prompts = [scene_to_prompt(sample_scene(np.random.default_rng([7, i]))) for i in range(N_PROMPTS - 2)]
    prompts[3:3] = [OUTSIDE_GRAMMAR, ""]
    (tmp / "prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    out = build(tmp, "recipe=all", f"n={N_PROMPTS}", f"source.prompts_file={tmp / 'prompts.txt'}")
    # The card's plots are written by card.write; make sure they exist whichever way run.py writes the card.
    card.write(out, manifest.read(out))
    return out


@pytest.fixture
def dataset_copy(publish_dataset, tmp_path) -> Path:
    """A private copy a test may damage."""
    return Path(shutil.copytree(publish_dataset, tmp_path / "ds"))
