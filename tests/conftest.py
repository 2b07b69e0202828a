"""Session fixtures shared by the test folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import build
from tests.publish.chromium import find_chromium


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


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    """Debian's Chromium for the page tests: CI must have it (a failure there), elsewhere a skip."""
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium is not installed: .ci/run must `apt-get install -y chromium`")
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); CI installs it")
    return binary
