"""Sequence plans: each mode's plan equals IRGL.md's table, written out here by hand."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from curation.core import schema
from curation.trainer.plan import ImageGrid, PlanError, Planner
from curation.trainer.tokenizer import ByteTokenizer

# (kind, column, turn, loss, droppable) — IRGL.md "The six learning modes": "cond" items carry
# no loss and may be dropped for CFG; a target image is a noised VAE copy; a conditioning image
# is a clean VAE copy and a ViT copy; loss-bearing text is never dropped.
EXPECTED = {
    "initial_thinking_understanding_learning": [
        ("text", "prompt", "user", False, True),
        ("vae", "image", "assistant", False, True),
        ("vit", "image", "assistant", False, True),
        ("text", "question", "user", False, True),
        ("text", "initial_thinking", "assistant", True, False),
    ],
    "initial_thinking_generation_learning": [
        ("text", "prompt", "user", False, True),
        ("text", "initial_thinking", "assistant", True, False),
    ],
    "initial_full_learning": [
        ("text", "prompt", "user", False, True),
        ("text", "initial_thinking", "assistant", True, False),
        ("vae", "image", "assistant", True, False),
    ],
    "improving_thinking_understanding_learning": [
        ("text", "prompt", "user", False, True),
        ("vae", "initial_image", "assistant", False, True),
        ("vit", "initial_image", "assistant", False, True),
        ("vae", "improved_image", "assistant", False, True),
        ("vit", "improved_image", "assistant", False, True),
        ("text", "question", "user", False, True),
        ("text", "improving_thinking", "assistant", True, False),
    ],
    "improving_thinking_generation_learning": [
        ("text", "prompt", "user", False, True),
        ("text", "initial_thinking", "assistant", False, True),
        ("vae", "initial_image", "assistant", False, True),
        ("vit", "initial_image", "assistant", False, True),
        ("text", "improving_thinking", "assistant", True, False),
    ],
    "improving_full_learning": [
        ("text", "prompt", "user", False, True),
        ("text", "initial_thinking", "assistant", False, True),
        ("vae", "initial_image", "assistant", False, True),
        ("vit", "initial_image", "assistant", False, True),
        ("text", "improving_thinking", "assistant", True, False),
        ("vae", "improved_image", "assistant", True, False),
    ],
}

TINY_VAE = ImageGrid(min_side=32, max_side=64, stride=16)
TINY_VIT = ImageGrid(min_side=28, max_side=56, stride=14)
# The hand-made images are 64×48: VAE keeps 64×48 (4×3 cells), ViT scales by 56/64 to 56×42 (4×3 cells).
IMAGE_CONTENT_TOKENS = {"vae": 12, "vit": 12}


def first_row(dataset, mode: str) -> dict:
    return pq.read_table(dataset / "data" / mode).slice(0, 1).to_pylist()[0]


@pytest.mark.parametrize("mode", schema.MODE_KEYS)
def test_plan_of_a_known_row_matches_the_table(handmade_dataset, mode):
    row = first_row(handmade_dataset, mode)
    plan = Planner(ByteTokenizer(), TINY_VAE, TINY_VIT).plan(schema.load(mode), row)

    assert [(i.kind, i.column, i.turn, i.loss, i.droppable) for i in plan.items] == EXPECTED[mode]
    for item in plan.items:
        if item.kind == "text":
            assert item.ids == tuple(row[item.column].encode("utf-8"))
            assert item.tokens == len(row[item.column].encode("utf-8")) + 2
        else:
            assert item.content_tokens == IMAGE_CONTENT_TOKENS[item.kind]
            assert item.tokens == IMAGE_CONTENT_TOKENS[item.kind] + 2
    assert plan.num_tokens == sum(i.tokens for i in plan.items)


def test_target_and_clean_copies_share_pixels_and_vit_has_its_own_size(handmade_dataset):
    plan = Planner(ByteTokenizer(), TINY_VAE, TINY_VIT).plan(schema.load("improving_full_learning"),
                                                             first_row(handmade_dataset, "improving_full_learning"))
    shapes = {(i.kind, i.column): tuple(i.pixels.shape) for i in plan.items if i.kind != "text"}
    assert shapes == {("vae", "initial_image"): (3, 48, 64), ("vit", "initial_image"): (3, 42, 56),
                      ("vae", "improved_image"): (3, 48, 64)}
    pixels = [i.pixels for i in plan.items if i.kind != "text"]
    assert all(-1.0 <= float(p.min()) and float(p.max()) <= 1.0 for p in pixels)


@pytest.mark.parametrize("grid,size,expected", [
    # IRGL.md bounds. A small square is scaled up to the minimum side.
    (ImageGrid(512, 1024, 16), (256, 256), (512, 512)),
    (ImageGrid(378, 980, 14), (256, 256), (378, 378)),
    # A wide image is scaled down to the maximum long side.
    (ImageGrid(512, 1024, 16), (2000, 1000), (1024, 512)),
    (ImageGrid(378, 980, 14), (2000, 1000), (980, 490)),
    # Sides are rounded to the stride: 1030×1000 → 1024×994.2 → 1024×992.
    (ImageGrid(512, 1024, 16), (1030, 1000), (1024, 992)),
])
def test_stride_aligned_resize(grid, size, expected):
    assert grid.size(*size) == expected
    w, h = expected
    assert grid.tokens(w, h) == (w // grid.stride) * (h // grid.stride)


def test_a_row_with_a_broken_image_is_a_plan_error(handmade_dataset):
    row = first_row(handmade_dataset, "initial_full_learning")
    row["image"] = {"bytes": b"\x89PNG not really", "path": None}
    with pytest.raises(PlanError, match=row["sample_id"]):
        Planner(ByteTokenizer(), TINY_VAE, TINY_VIT).plan(schema.load("initial_full_learning"), row)
