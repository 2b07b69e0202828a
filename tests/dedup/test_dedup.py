"""Global dedup: planted duplicates, layout independence, and a brute-force reference."""

from __future__ import annotations

import random

import polars as pl
import pytest

from curation.pipeline.dedup import (DedupRow, Duplicate, StreamingDedupIndex, as_frame, bands,
                                  find_duplicates)
from curation.core.reasons import IMAGE_DUPLICATE, IMAGE_NEAR_DUPLICATE, PROMPT_DUPLICATE


def brute_force(rows: list[DedupRow], max_distance: int | None) -> dict[str, Duplicate]:
    """The rule, read literally: O(n²) over every pair."""
    found = {}
    for row in rows:
        smaller = [o for o in rows if o.sample_id < row.sample_id]
        same_prompt = [o.sample_id for o in smaller if row.prompt_key is not None and o.prompt_key == row.prompt_key]
        same_image = [o.sample_id for o in smaller
                      if row.image_sha256 is not None and o.image_sha256 == row.image_sha256]
        near = [((o.phash ^ row.phash).bit_count(), o.sample_id) for o in smaller
                if max_distance is not None and row.phash is not None and o.phash is not None
                and (o.phash ^ row.phash).bit_count() <= max_distance]
        if same_prompt:
            found[row.sample_id] = Duplicate(PROMPT_DUPLICATE, min(same_prompt))
        elif same_image:
            found[row.sample_id] = Duplicate(IMAGE_DUPLICATE, min(same_image))
        elif near:
            original = min(i for _, i in near)
            found[row.sample_id] = Duplicate(IMAGE_NEAR_DUPLICATE, original,
                                             next(d for d, i in near if i == original))
    return found


def _sid(i: int) -> str:
    return f"{i * 2654435761 % (1 << 64):016x}"  # ids in an order unrelated to i


def random_rows(n: int, seed: int, *, distinct_prompts: int, distinct_images: int, flips: int) -> list[DedupRow]:
    """Rows drawn from small pools (many collisions), hashes near a few centres."""
    rng = random.Random(seed)
    centres = [rng.getrandbits(64) for _ in range(max(1, n // 8))]
    rows = []
    for i in range(n):
        phash = None
        if rng.random() < 0.9:
            phash = rng.choice(centres)
            for _ in range(rng.randint(0, flips)):
                phash ^= 1 << rng.randrange(64)
        rows.append(DedupRow(_sid(i), f"p{rng.randrange(distinct_prompts)}" if rng.random() < 0.95 else None,
                             f"i{rng.randrange(distinct_images)}" if phash is not None else None, phash))
    return rows


def test_planted_exact_and_near_duplicates():
    base = 0x0123_4567_89AB_CDEF
    rows = [
        DedupRow("a0", "pa", "ia", base),
        DedupRow("b0", "pb", "ib", base ^ 0xFFFF_0000_0000_0000),       # 16 bits away: distinct
        DedupRow("a3", "pa", "ic", base ^ (1 << 63)),                   # same prompt as a0
        DedupRow("a1", "pz", "ia", base),                               # same image bytes as a0
        DedupRow("a2", "py", "id", base ^ 0b1011 << 20),                # 3 bits from a0
        DedupRow("c0", "pc", "ie", base ^ 0b11111 << 40),               # 5 bits: beyond 4
        DedupRow("0f", "pq", None, None),                               # no image
        DedupRow("0e", "pq", None, None),                               # ... its prompt twice
    ]
    found = find_duplicates(rows, max_distance=4)
    assert found == {
        "a3": Duplicate(PROMPT_DUPLICATE, "a0"),
        "a1": Duplicate(IMAGE_DUPLICATE, "a0"),
        "a2": Duplicate(IMAGE_NEAR_DUPLICATE, "a0", 3),
        "0f": Duplicate(PROMPT_DUPLICATE, "0e"),
    }
    assert found["a2"].to_reject(4).detail == "perceptual hash 3 bits from a0 (threshold 4)"
    assert found["a3"].to_reject().reason == PROMPT_DUPLICATE and "a0" in found["a3"].to_reject().detail
    assert find_duplicates(rows, max_distance=None).keys() == {"a3", "a1", "0f"}  # near check off


def test_an_original_may_itself_be_a_duplicate():
    # b is a prompt duplicate of a; c repeats b's image: it is rejected naming b, not passed.
    rows = [DedupRow("a", "p", "i1", None), DedupRow("b", "p", "i2", None), DedupRow("c", "q", "i2", None)]
    assert find_duplicates(rows, max_distance=4) == {"b": Duplicate(PROMPT_DUPLICATE, "a"),
                                                     "c": Duplicate(IMAGE_DUPLICATE, "b")}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_distance", [0, 2, 4, 9])
def test_equals_brute_force_on_random_rows(seed, max_distance):
    rows = random_rows(300, seed, distinct_prompts=250, distinct_images=260, flips=8)
    assert find_duplicates(rows, max_distance=max_distance) == brute_force(rows, max_distance)


def test_same_result_for_any_order_or_split_into_four_shards():
    rows = random_rows(2000, 7, distinct_prompts=1800, distinct_images=1900, flips=6)
    whole = find_duplicates(rows, max_distance=4)
    assert {d.reason for d in whole.values()} == {PROMPT_DUPLICATE, IMAGE_DUPLICATE, IMAGE_NEAR_DUPLICATE}
    rng = random.Random(3)
    shuffled = rows[:]
    rng.shuffle(shuffled)
    assert find_duplicates(shuffled, max_distance=4) == whole
    # Four shards by sample-id hash (as `shard=i num_shards=4` splits), their key tables concatenated.
    shards = [as_frame([r for r in rows if int(r.sample_id, 16) % 4 == k]) for k in range(4)]
    assert find_duplicates(pl.concat(shards[::-1]), max_distance=4) == whole
    # Each shard alone misses the duplicates whose original is in another shard: why dedup is global.
    per_shard = {}
    for frame in shards:
        per_shard.update(find_duplicates(frame, max_distance=4))
    assert set(per_shard) < set(whole)


def test_many_copies_of_one_hash_are_collapsed_before_the_join(monkeypatch):
    import curation.pipeline.dedup as dedup

    monkeypatch.setattr(dedup, "_JOIN_CHUNK", 7)  # several chunks per band
    rows = [DedupRow(f"{i:04d}", f"p{i}", f"i{i}", 42) for i in range(3000)] + [DedupRow("9999", "x", "y", 43)]
    found = find_duplicates(rows, max_distance=4)
    assert len(found) == 3000 and found["9999"] == Duplicate(IMAGE_NEAR_DUPLICATE, "0000", 1)
    assert found["0001"] == Duplicate(IMAGE_NEAR_DUPLICATE, "0000", 0)


def test_bands_cover_the_bits_and_refuse_impossible_distances():
    for d in range(0, 64):
        spans = bands(64, d)
        assert len(spans) == d + 1 and spans[0][0] == 0 and sum(w for _, w in spans) == 64
    with pytest.raises(ValueError, match="max_distance=64"):
        bands(64, 64)


def test_one_row_per_sample():
    with pytest.raises(ValueError, match="one row per sample id"):
        find_duplicates([DedupRow("a", "p", None, None)] * 2, max_distance=4)


@pytest.mark.parametrize("seed", [0, 5])
def test_streaming_index_says_yes_only_for_certain_duplicates(seed):
    rows = random_rows(400, seed, distinct_prompts=350, distinct_images=360, flips=6)
    final = find_duplicates(rows, max_distance=4)
    index = StreamingDedupIndex(max_distance=4)
    said_yes = set()
    for row in random.Random(seed).sample(rows, len(rows)):  # arrival order unrelated to ids
        if index.collides_with_smaller(row):
            said_yes.add(row.sample_id)
        index.add(row)
    assert said_yes <= set(final)  # never a false alarm
    assert len(said_yes) > len(final) // 4  # and it catches a good share early
    # In id order, the stream has seen every smaller id: it decides exactly.
    index = StreamingDedupIndex(max_distance=4)
    in_order = set()
    for row in sorted(rows):
        if index.collides_with_smaller(row):
            in_order.add(row.sample_id)
        index.add(row)
    assert in_order == set(final)
