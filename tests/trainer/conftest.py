"""Datasets for the trainer tests.

`handmade_dataset`: a few schema-conformant rows per mode written here with pyarrow (fast, for
unit tests). `offline_dataset`: a real dataset built by the pipeline's offline world
(`curation.run.main`), for the training and export tests.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.core import schema

WORDS = ("red", "blue", "circle", "square", "left", "right", "large", "small", "sky", "grass", "light", "shadow")


def png(rng: np.random.Generator, size: tuple[int, int]) -> bytes:
    """A flat background with one coloured rectangle: structure a tiny model can learn."""
    w, h = size
    pixels = np.empty((h, w, 3), dtype=np.uint8)
    pixels[:] = rng.integers(0, 256, 3)
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    pixels[y0:y0 + h // 2, x0:x0 + w // 2] = rng.integers(0, 256, 3)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n))


def text_for(column: str, rng: np.random.Generator) -> str:
    if column == "initial_thinking":
        return f"<think>I will draw a {sentence(rng, 6)}.</think>"
    if column == "improving_thinking":
        return (f"<think>The image lacks {sentence(rng, 4)}.\n### Detailed Explanation of Required Improvements:\n"
                f"{sentence(rng, 5)}\n### Step-by-Step Modification Guidance:\n{sentence(rng, 5)}\n"
                f"### Final Comprehensive Prompt for the Improved Image:\n{sentence(rng, 6)}</think>")
    return f"A {sentence(rng, 5)}."


def write_dataset(root: Path, rows_per_mode: int = 8, row_group_rows: int = 3,
                  image_size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """`<root>/data/<mode>/train-00000-of-00001.parquet` for all six modes, sorted by sample_id."""
    for m, mode in enumerate(schema.MODE_KEYS):
        s = schema.load(mode)
        rng = np.random.default_rng([seed, m])
        rows = []
        for i in range(rows_per_mode):
            row = {}
            for col in s.columns:
                if col.is_image:
                    row[col.name] = {"bytes": png(rng, image_size), "path": None}
                elif col.name == "sample_id":
                    row[col.name] = f"{m:02x}{i:014x}"
                elif col.name == "source_id":
                    row[col.name] = f"source-{i}"
                elif col.name == "lineage":
                    row[col.name] = json.dumps({"sample_id": row["sample_id"], "made_by": "tests"})
                else:
                    row[col.name] = text_for(col.name, rng)
            rows.append(row)
        folder = root / "data" / mode
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=s.arrow_schema())
        pq.write_table(table, folder / "train-00000-of-00001.parquet", row_group_size=row_group_rows)
    return root


@pytest.fixture(scope="session")
def handmade_dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("handmade"))


@pytest.fixture(scope="session")
def offline_dataset(all_modes_dataset) -> Path:
    """A real dataset of all six modes (n=12) from the pipeline's offline world: the suite's
    shared one (tests/conftest.py), built once by `curation.run.main`; read only."""
    return all_modes_dataset
