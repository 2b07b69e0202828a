"""Global dedup: planted duplicates, layout independence, and a brute-force reference."""

from __future__ import annotations

import random

import polars as pl
import pytest

from curation.pipeline.dedup import (DedupRow, Duplicate, StreamingDedupIndex, as_frame, bands,
                                     find_duplicates, why_first)
from curation.core.reasons import IMAGE_DUPLICATE, IMAGE_NEAR_DUPLICATE, PROMPT_DUPLICATE


def _rank(row: DedupRow) -> tuple:
    """The rank, written out again (smaller first): more pixels, lossless, a higher measured score
    (measured before none), more bytes, the smaller id."""
    return (-(row.pixels or 0), not row.lossless, row.score is None, -(row.score or 0), -(row.nbytes or 0),
            row.sample_id)


def brute_force(rows: list[DedupRow], max_distance: int | None) -> dict[str, Duplicate]:
    """The rule, read literally: O(n²) over every pair."""
    rows = [DedupRow(*row) for row in rows]

    def prompt(a, b):
        return a.prompt_key is not None and a.prompt_key == b.prompt_key

    def image(a, b):
        return a.image_sha256 is not None and a.image_sha256 == b.image_sha256

    def near(a, b):
        return (max_distance is not None and a.phash is not None and b.phash is not None
                and (a.phash ^ b.phash).bit_count() <= max_distance)

    def size(row):
        return (-(row.pixels or 0), not row.lossless)

    # A row beaten on size by any colliding row is ranked as unscored.
    beaten = {r.sample_id for r in rows
              if any(size(o) < size(r) for o in rows if o is not r and (prompt(r, o) or image(r, o) or near(r, o)))}
    rows = [r._replace(score=None) if r.sample_id in beaten else r for r in rows]
    by_id = {r.sample_id: r for r in rows}
    found = {}
    for row in rows:
        better = [o for o in rows if _rank(o) < _rank(row)]
        for reason, collides in ((PROMPT_DUPLICATE, prompt), (IMAGE_DUPLICATE, image), (IMAGE_NEAR_DUPLICATE, near)):
            hits = [o for o in better if collides(row, o)]
            if hits:
                original = min(hits, key=_rank)
                distance = (original.phash ^ row.phash).bit_count() if reason == IMAGE_NEAR_DUPLICATE else None
                found[row.sample_id] = (reason, original.sample_id, distance)
                break
    result = {}
    for sid, (reason, original, distance) in found.items():
        kept = original
        while kept in found:
            kept = found[kept][1]
        result[sid] = Duplicate(reason, original, distance, why_first(by_id[original], by_id[sid]),
                                None if kept == original else kept)
    return result


def _sid(i: int) -> str:
    return f"{i * 2654435761 % (1 << 64):016x}"  # ids in an order unrelated to i


def random_rows(n: int, seed: int, *, distinct_prompts: int, distinct_images: int, flips: int,
                scores: bool = False) -> list[DedupRow]:
    """Rows drawn from small pools (many collisions), hashes near a few centres; each image's size,
    format and byte count from small pools too (ties in every part of the rank), fixed per image
    (the same bytes have one size); with `scores`, a score per row from a small pool, or none."""
    rng = random.Random(seed)
    centres = [rng.getrandbits(64) for _ in range(max(1, n // 8))]
    rows = []
    for i in range(n):
        phash = None
        if rng.random() < 0.9:
            phash = rng.choice(centres)
            for _ in range(rng.randint(0, flips)):
                phash ^= 1 << rng.randrange(64)
        image = f"i{rng.randrange(distinct_images)}" if phash is not None else None
        pixels = lossless = nbytes = None
        if image is not None:
            looks = random.Random(image)
            pixels, lossless, nbytes = looks.choice((256 * 256, 512 * 512)), looks.random() < 0.5, looks.randrange(3)
        score = rng.choice((None, 0.5, 1.0, 2.0)) if scores else None
        rows.append(DedupRow(_sid(i), f"p{rng.randrange(distinct_prompts)}" if rng.random() < 0.95 else None,
                             image, phash, pixels, lossless, nbytes, score))
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
    by_id = "a smaller sample id"  # nothing else tells these rows apart
    assert found == {
        "a3": Duplicate(PROMPT_DUPLICATE, "a0", None, by_id),
        "a1": Duplicate(IMAGE_DUPLICATE, "a0", None, by_id),
        "a2": Duplicate(IMAGE_NEAR_DUPLICATE, "a0", 3, by_id),
        "0f": Duplicate(PROMPT_DUPLICATE, "0e", None, by_id),
    }
    assert found["a2"].to_reject(4).detail == "perceptual hash 3 bits from a0 (threshold 4), kept for a smaller sample id"
    assert found["a3"].to_reject().reason == PROMPT_DUPLICATE and "a0" in found["a3"].to_reject().detail
    assert find_duplicates(rows, max_distance=None).keys() == {"a3", "a1", "0f"}  # near check off


def test_an_original_may_itself_be_a_duplicate():
    # b is a prompt duplicate of a; c repeats b's image: it is rejected naming b, not passed,
    # and its detail names a, the kept row b leads to.
    rows = [DedupRow("a", "p", "i1", None), DedupRow("b", "p", "i2", None), DedupRow("c", "q", "i2", None)]
    found = find_duplicates(rows, max_distance=4)
    assert found == {"b": Duplicate(PROMPT_DUPLICATE, "a", None, "a smaller sample id"),
                     "c": Duplicate(IMAGE_DUPLICATE, "b", None, "a smaller sample id", "a")}
    assert found["c"].to_reject().detail == "same image bytes as b, itself a duplicate of kept a"


@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_distance", [0, 2, 4, 9])
def test_equals_brute_force_on_random_rows(seed, max_distance, scores):
    rows = random_rows(300, seed, distinct_prompts=250, distinct_images=260, flips=8, scores=scores)
    found = find_duplicates(rows, max_distance=max_distance)
    assert found == brute_force(rows, max_distance)
    # Every part of the rank decides some pair here, and chains (an original that is itself a
    # duplicate) occur: the brute force is compared where it matters.
    whys = {d.why.split(" (")[0] for d in found.values()}
    assert {"more pixels", "a lossless format", "more bytes", "a smaller sample id"} <= whys
    assert ("a higher score" in whys) == scores
    assert any(d.kept is not None for d in found.values())


def test_the_best_copy_is_kept_whatever_its_id():
    """A PNG, its same-size JPEG re-encode, a half-size copy and a same-size JPEG with a higher
    score, all near one another: the PNG is kept whatever the ids, the detail says why."""
    png = DedupRow("f0", "p0", "png", 0b1010, 512 * 512, True, 300_000, 1.0)
    jpeg = DedupRow("00", "p1", "jpeg", 0b1011, 512 * 512, False, 90_000, 3.0)  # higher score, smaller id
    small = DedupRow("01", "p2", "small", 0b1010, 256 * 256, True, 80_000, 9.0)
    found = find_duplicates([png, jpeg, small], max_distance=4)
    assert set(found) == {"00", "01"}
    assert found["00"] == Duplicate(IMAGE_NEAR_DUPLICATE, "f0", 1, "a lossless format")
    assert found["01"] == Duplicate(IMAGE_NEAR_DUPLICATE, "f0", 0, f"more pixels ({512 * 512} > {256 * 256})")
    # Two same-size JPEGs: the higher score is kept; without scores, the larger file.
    other = DedupRow("02", "p3", "jpeg2", 0b1011, 512 * 512, False, 95_000, 2.0)
    assert find_duplicates([jpeg, other], max_distance=4)["02"].original == "00"
    assert find_duplicates([jpeg._replace(score=None), other._replace(score=None)], max_distance=4)["00"].why == \
        "more bytes (95000 > 90000)"
    # A row beaten on size is ranked unscored: its score, which a gate that turned it away never
    # measured, decides nothing (here: the small copy's high score does not beat the JPEG).
    assert find_duplicates([small, jpeg._replace(phash=0b1110, score=None)], max_distance=4)["01"].original == "00"


def test_same_result_for_any_order_or_split_into_four_shards():
    rows = random_rows(2000, 7, distinct_prompts=1800, distinct_images=1900, flips=6, scores=True)
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
    # (Without scores a shard alone finds a subset; with them it may also differ otherwise, since
    # which rows are beaten on size, hence unscored, depends on the rows present.)
    unscored = [r._replace(score=None) for r in rows]
    shards = [as_frame([r for r in unscored if int(r.sample_id, 16) % 4 == k]) for k in range(4)]
    per_shard = {}
    for frame in shards:
        per_shard.update(find_duplicates(frame, max_distance=4))
    assert set(per_shard) < set(find_duplicates(unscored, max_distance=4))


def test_many_copies_of_one_hash_are_collapsed_before_the_join(monkeypatch):
    import curation.pipeline.dedup as dedup

    monkeypatch.setattr(dedup, "_JOIN_CHUNK", 7)  # several chunks per band
    rows = [DedupRow(f"{i:04d}", f"p{i}", f"i{i}", 42) for i in range(3000)] + [DedupRow("9999", "x", "y", 43)]
    found = find_duplicates(rows, max_distance=4)
    assert len(found) == 3000 and found["9999"][:3] == (IMAGE_NEAR_DUPLICATE, "0000", 1)
    assert found["0001"][:3] == (IMAGE_NEAR_DUPLICATE, "0000", 0)


def test_bands_cover_the_bits_and_refuse_impossible_distances():
    for d in range(0, 64):
        spans = bands(64, d)
        assert len(spans) == d + 1 and spans[0][0] == 0 and sum(w for _, w in spans) == 64
    with pytest.raises(ValueError, match="max_distance=64"):
        bands(64, 64)


def test_one_row_per_sample():
    with pytest.raises(ValueError, match="one row per sample id"):
        find_duplicates([DedupRow("a", "p", None, None)] * 2, max_distance=4)


@pytest.mark.parametrize("scored", [False, True])
@pytest.mark.parametrize("seed", [0, 5])
def test_streaming_index_says_yes_only_for_certain_duplicates(seed, scored):
    rows = random_rows(400, seed, distinct_prompts=350, distinct_images=360, flips=6, scores=scored)
    final = find_duplicates(rows, max_distance=4)
    # Whatever the scores turn out to be (the gates see none), a row it said yes to loses.
    rescored = [r._replace(score=None if r.score is None else 3.0 - r.score) for r in rows]
    final_rescored = find_duplicates(rescored, max_distance=4)
    index = StreamingDedupIndex(max_distance=4, scored=scored)
    said_yes = set()
    for row in random.Random(seed).sample(rows, len(rows)):  # arrival order unrelated to ids
        if index.collides_with_smaller(row):
            said_yes.add(row.sample_id)
        index.add(row)
    assert said_yes <= set(final) & set(final_rescored)  # never a false alarm
    assert len(said_yes) > len(final) // 4  # and it catches a good share early
    if scored:
        return
    # In rank order, the stream has seen every better row: without scores it decides exactly.
    index = StreamingDedupIndex(max_distance=4)
    in_order = set()
    for row in sorted(rows, key=_rank):
        if index.collides_with_smaller(row):
            in_order.add(row.sample_id)
        index.add(row)
    assert in_order == set(final)
