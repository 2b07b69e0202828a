"""Session fixtures shared by the test folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import build


@pytest.fixture(autouse=True, scope="session")
def _private_datasets_cache(tmp_path_factory):
    """`datasets` caches loaded folders by name; a session cache keeps tests from seeing old builds."""
    import datasets.config

    path = tmp_path_factory.mktemp("hf_datasets_cache")
    previous = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = path
    yield
    datasets.config.HF_DATASETS_CACHE = previous


@pytest.fixture(scope="session")
def all_modes_dataset(tmp_path_factory) -> Path:
    """One offline dataset with all six modes (n=12), shared by read-only tests."""
    tmp = tmp_path_factory.mktemp("all")
    return build(tmp, "recipe=all", "n=12")
