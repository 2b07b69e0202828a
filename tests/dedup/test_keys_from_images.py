"""Global dedup over keys the gates compute from real images, split as `num_shards=4` splits.

Planted: an exact copy of an image (same bytes), a near copy (the same picture with a small
mark, as JPEG: other bytes, a perceptual hash at most a few bits away), and a repeated prompt with another image.
Each shard's key table alone misses the duplicates whose original another shard holds; their
concatenation gives the same answer as one process, naming the original of each duplicate.
"""

from __future__ import annotations

import hashlib
import io
import random

import polars as pl
from PIL import Image, ImageDraw

from curation.backends.base import SourceItem
from curation.pipeline.dedup import DedupRow, as_frame, find_duplicates
from curation.pipeline.gates import Gates, GateSettings, normalise_prompt
from curation.pipeline.samples import in_shard, sample_id_for
from curation.pipeline.store import Store
from curation.core.reasons import IMAGE_DUPLICATE, IMAGE_NEAR_DUPLICATE, PROMPT_DUPLICATE
from tests.dedup.test_dedup import brute_force

SOURCE = {"id": "test:planted"}


def picture(seed: int) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (288, 256), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(0, 220), rng.randrange(0, 190)
        box = (x, y, x + rng.randrange(30, 70), y + rng.randrange(30, 70))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image


def encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return out.getvalue()


def planted_items() -> list[SourceItem]:
    items = [SourceItem(f"row{i:02d}", f"a scene number {i}", encode(picture(i), "PNG")) for i in range(40)]
    items.append(SourceItem("copy", "a different caption", items[3].image))  # same bytes as row03
    touched = picture(7)
    ImageDraw.Draw(touched).rectangle((140, 120, 143, 123), fill=(255, 255, 255))
    items.append(SourceItem("near", "yet another caption", encode(touched, "JPEG")))  # row07, touched, as JPEG
    items.append(SourceItem("again", "A  scene number 11 ", encode(picture(99), "PNG")))  # row11's prompt
    return items


def keys(item: SourceItem, gates: Gates) -> DedupRow:
    seen = gates.inspect(item)
    prompt_key = hashlib.sha256(normalise_prompt(seen.prompt).encode()).hexdigest()
    return DedupRow(sample_id_for(SOURCE, item.source_id), prompt_key, seen.bytes_key, seen.phash)


def test_four_shards_find_what_one_process_finds(tmp_path):
    settings = GateSettings()
    gates = Gates(settings, Store(tmp_path / "cache"))
    items = planted_items()
    rows = [keys(item, gates) for item in items]
    ids = {item.source_id: row.sample_id for item, row in zip(items, rows)}
    whole = find_duplicates(rows, max_distance=settings.near_duplicate_distance)
    assert whole == brute_force(rows, settings.near_duplicate_distance)

    def planted(name, original):
        a, b = ids[name], ids[original]
        return max(a, b), min(a, b)  # whichever has the larger id is the duplicate

    dup, orig = planted("copy", "row03")
    assert whole[dup].reason == IMAGE_DUPLICATE and whole[dup].original == orig
    dup, orig = planted("near", "row07")
    assert whole[dup].reason == IMAGE_NEAR_DUPLICATE and whole[dup].original == orig
    assert 0 < whole[dup].distance <= settings.near_duplicate_distance
    dup, orig = planted("again", "row11")
    assert whole[dup].reason == PROMPT_DUPLICATE and whole[dup].original == orig
    assert len(whole) == 3  # the 40 distinct pictures stay apart

    shards = [as_frame([r for r in rows if in_shard(r.sample_id, k, 4)]) for k in range(4)]
    assert sum(s.height for s in shards) == len(rows)
    assert find_duplicates(pl.concat(shards), max_distance=settings.near_duplicate_distance) == whole
    accepted = {r.sample_id for r in rows} - set(whole)
    per_shard = set()
    for shard in shards:
        per_shard |= set(shard["sample_id"]) - set(find_duplicates(shard, max_distance=4))
    assert accepted <= per_shard  # a shard alone can only keep more (duplicates it cannot see)
