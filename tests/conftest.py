"""Session fixtures shared by the test folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import build


@pytest.fixture(scope="session")
def all_modes_dataset(tmp_path_factory) -> Path:
    """One offline dataset with all six modes (n=12), shared by read-only tests."""
    tmp = tmp_path_factory.mktemp("all")
    return build(tmp, "recipe=all", "n=12")
