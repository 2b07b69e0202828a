"""Global dedup: one rule over the whole source, whatever executor or shard layout ran it.

The rule. Among the samples that passed every other gate, a sample is a duplicate when a sample
with a smaller sample id has
  1. the same normalised prompt (`prompt_duplicate`), else
  2. the same image bytes, by sha256 (`image_duplicate`), else
  3. a perceptual hash within `max_distance` bits (`image_near_duplicate`);
the first reason that applies is the one recorded, and the reject names the smallest sample id
that has it. The original need not be accepted itself (a prompt duplicate's image still makes
a later copy of that image a duplicate): that keeps the rule a function of pairs, so it needs no
sequential pass and gives the same answer for any order or split of the rows.

`find_duplicates` applies it to a table of dedup keys with polars: exact keys by a group-by
(the group's smallest id is the original); perceptual hashes by a banded join. The hash's bits
are cut into `max_distance + 1` bands; two hashes within `max_distance` bits differ in at most
that many bands, so they agree exactly on at least one (pigeonhole). Joining on each band and
then checking the full Hamming distance therefore finds every pair within the distance and no
other: complete and exact, without comparing all n² pairs.

`StreamingDedupIndex` answers the same question while rows stream in, for the cases it can
decide early: "an already-seen sample with a smaller id collides" means the sample is a
duplicate under the rule whatever arrives later, so its model stages can be skipped; the
reason and original are decided by the end-of-run `find_duplicates` pass.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, NamedTuple

import polars as pl

from curation.core.reasons import IMAGE_DUPLICATE, IMAGE_NEAR_DUPLICATE, PROMPT_DUPLICATE, STAGE
from curation.core.records import Reject

# One row per sample that passed the other gates. prompt_key: hash of the normalised prompt;
# image_sha256: of the source image bytes (null without an image); phash: the perceptual hash
# as an unsigned integer (null without an image or with near-duplicates off).
SCHEMA = {"sample_id": pl.Utf8, "prompt_key": pl.Utf8, "image_sha256": pl.Utf8, "phash": pl.UInt64}

# Left rows joined per step of the banded join: bounds the candidate pairs held at once.
_JOIN_CHUNK = 10_000


class DedupRow(NamedTuple):
    sample_id: str
    prompt_key: str | None
    image_sha256: str | None
    phash: int | None


class Duplicate(NamedTuple):
    reason: str
    original: str  # the smallest sample id with the same key (or a hash within the distance)
    distance: int | None = None  # Hamming bits, for image_near_duplicate

    def to_reject(self, max_distance: int | None = None) -> Reject:
        if self.reason == PROMPT_DUPLICATE:
            detail = f"same prompt as {self.original}"
        elif self.reason == IMAGE_DUPLICATE:
            detail = f"same image bytes as {self.original}"
        else:
            detail = f"perceptual hash {self.distance} bits from {self.original} (threshold {max_distance})"
        return Reject(STAGE, self.reason, detail)


def bands(bits: int, max_distance: int) -> list[tuple[int, int]]:
    """`max_distance + 1` contiguous bit ranges covering `bits`, as (low bit, width)."""
    if not 0 <= max_distance < bits <= 64:
        raise ValueError(f"max_distance={max_distance} must be within [0, bits={bits}) and bits at most 64")
    n = max_distance + 1
    edges = [round(i * bits / n) for i in range(n + 1)]
    return [(lo, hi - lo) for lo, hi in zip(edges, edges[1:])]


def as_frame(rows: Iterable[DedupRow | tuple] | pl.DataFrame) -> pl.DataFrame:
    if isinstance(rows, pl.DataFrame):
        return rows.select([pl.col(name).cast(dtype) for name, dtype in SCHEMA.items()])
    return pl.DataFrame(list(rows), schema=SCHEMA, orient="row")


def find_duplicates(rows: Iterable[DedupRow | tuple] | pl.DataFrame, *, max_distance: int | None,
                    bits: int = 64) -> dict[str, Duplicate]:
    """Every duplicate among `rows` (the rule above), by sample id; originals are absent."""
    frame = as_frame(rows)
    if frame["sample_id"].n_unique() != frame.height:
        raise ValueError("dedup rows must have one row per sample id (a shard was read twice?)")
    found: dict[str, Duplicate] = {}
    for column, reason in (("prompt_key", PROMPT_DUPLICATE), ("image_sha256", IMAGE_DUPLICATE)):
        for sample_id, original in _exact(frame, column).iter_rows():
            found.setdefault(sample_id, Duplicate(reason, original))
    if max_distance is not None:
        for sample_id, original, distance in _near(frame, max_distance, bits).iter_rows():
            found.setdefault(sample_id, Duplicate(IMAGE_NEAR_DUPLICATE, original, distance))
    return found


def _exact(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """(sample_id, original) for every row whose key a smaller id has too."""
    keyed = frame.select("sample_id", column).drop_nulls(column)
    firsts = keyed.group_by(column).agg(pl.col("sample_id").min().alias("original"))
    return (keyed.join(firsts, on=column).filter(pl.col("sample_id") != pl.col("original"))
            .select("sample_id", "original"))


def _near(frame: pl.DataFrame, max_distance: int, bits: int) -> pl.DataFrame:
    """(sample_id, original, distance): the smallest id whose hash is within the distance.

    Identical hashes are collapsed first (a group's smallest id stands for it), so a thousand
    copies of one image cost one row of the join, not a million pairs.
    """
    hashed = frame.select("sample_id", "phash").drop_nulls("phash")
    groups = hashed.group_by("phash").agg(pl.col("sample_id").min().alias("first"))
    band_exprs = [((pl.col("phash") // pl.lit(1 << lo, dtype=pl.UInt64)) & pl.lit((1 << width) - 1, dtype=pl.UInt64))
                  .alias(f"band{i}") for i, (lo, width) in enumerate(bands(bits, max_distance))]
    groups = groups.with_columns(band_exprs)

    # For each distinct hash: the smallest `first` among the OTHER distinct hashes within reach.
    best: pl.DataFrame | None = None
    for i in range(len(band_exprs)):
        band = f"band{i}"
        right = groups.select(pl.col(band), pl.col("phash").alias("other"), pl.col("first").alias("other_first"))
        for start in range(0, groups.height, _JOIN_CHUNK):
            left = groups.slice(start, _JOIN_CHUNK).select(band, "phash")
            pairs = (left.join(right, on=band)
                     .filter(pl.col("phash") != pl.col("other"))
                     .with_columns(pl.col("phash").xor(pl.col("other")).bitwise_count_ones()
                                   .cast(pl.Int32).alias("distance"))
                     .filter(pl.col("distance") <= max_distance)
                     .select("phash", "other_first", "distance"))
            best = _smallest(pairs if best is None else pl.concat([best, pairs]))
    if best is None or best.height == 0:
        best = pl.DataFrame(schema={"phash": pl.UInt64, "other_first": pl.Utf8, "distance": pl.Int32})

    # A sample's original: its own hash group's first (distance 0) or a near group's first,
    # whichever id is smaller, and only if that id is smaller than the sample's own.
    candidates = pl.concat([
        groups.select("phash", pl.col("first").alias("other_first"), pl.lit(0, dtype=pl.Int32).alias("distance")),
        best,
    ])
    return (hashed.join(candidates, on="phash")
            .filter(pl.col("other_first") < pl.col("sample_id"))
            .sort("sample_id", "other_first")
            .group_by("sample_id", maintain_order=True).first()
            .select("sample_id", pl.col("other_first").alias("original"), "distance"))


def _smallest(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per hash, the pair with the smallest other id (then the smallest distance)."""
    return (pairs.sort("phash", "other_first", "distance")
            .group_by("phash", maintain_order=True).first())


class StreamingDedupIndex:
    """While rows stream in: does an already-seen sample with a smaller id collide with this one?

    True means the end-of-run pass will reject the sample (for some reason, naming some
    original), so the executor may skip its model stages; False decides nothing yet, since a
    smaller id may still arrive. Consistent with `find_duplicates`: add every row that passed
    the other gates, whatever the answer for it.
    """

    def __init__(self, *, max_distance: int | None, bits: int = 64):
        self.max_distance = max_distance
        self._prompts: dict[str, str] = {}  # key -> smallest id seen with it
        self._images: dict[str, str] = {}
        self._bands = bands(bits, max_distance) if max_distance is not None else []
        # Per band: band value -> {hash: smallest id with that hash}.
        self._tables: list[dict[int, dict[int, str]]] = [defaultdict(dict) for _ in self._bands]

    def collides_with_smaller(self, row: DedupRow) -> bool:
        return self.first_collision(row) is not None

    def first_collision(self, row: DedupRow) -> Duplicate | None:
        """The rule applied to the rows seen so far: the reason and the smallest seen original, or
        None. Not None means the sample is a duplicate for good; the end-of-run pass, which sees
        every row, may still name a smaller original (or an earlier reason) for it."""
        sample_id, prompt_key, image_sha256, phash = row
        for key, table, reason in ((prompt_key, self._prompts, PROMPT_DUPLICATE),
                                   (image_sha256, self._images, IMAGE_DUPLICATE)):
            if key is not None and table.get(key, sample_id) < sample_id:
                return Duplicate(reason, table[key])
        if phash is None or self.max_distance is None:
            return None
        best: tuple[str, int] | None = None
        for table, (lo, width) in zip(self._tables, self._bands):
            for other, first in table.get((phash >> lo) & ((1 << width) - 1), {}).items():
                distance = (other ^ phash).bit_count()
                if first < sample_id and distance <= self.max_distance and (best is None or (first, distance) < best):
                    best = (first, distance)
        return None if best is None else Duplicate(IMAGE_NEAR_DUPLICATE, best[0], best[1])

    def add(self, row: DedupRow) -> None:
        sample_id, prompt_key, image_sha256, phash = row
        if prompt_key is not None:
            self._prompts[prompt_key] = min(sample_id, self._prompts.get(prompt_key, sample_id))
        if image_sha256 is not None:
            self._images[image_sha256] = min(sample_id, self._images.get(image_sha256, sample_id))
        if phash is not None and self.max_distance is not None:
            for table, (lo, width) in zip(self._tables, self._bands):
                bucket = table[(phash >> lo) & ((1 << width) - 1)]
                bucket[phash] = min(sample_id, bucket.get(phash, sample_id))
