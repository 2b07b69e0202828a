"""Global dedup: one rule over the whole source, whatever executor or shard layout ran it.

The rule. Among the samples that passed every other gate, two samples *collide* when they have
  1. the same normalised prompt (`prompt_duplicate`), else
  2. the same image bytes, by sha256 (`image_duplicate`), else
  3. perceptual hashes within `max_distance` bits (`image_near_duplicate`).
Every sample has a rank, best first (`rank_key`):
  a. more source pixels (the larger copy; a resize or a thumbnail loses),
  b. a lossless source format over a lossy one (a PNG over its same-size JPEG re-encode, which
     carries the JPEG's artefacts: encoded size alone would not always say so, since a flat
     synthetic picture can be smaller as a PNG than as a high-quality JPEG),
  c. the higher preference score (`dedup_pass.DEDUP_SCORE`: why that one, there) where one was
     measured, a measured score before none,
  d. more encoded bytes (of two lossy copies of one size, the less compressed one),
  e. the smaller sample id (so that the rank is total).
A sample is a duplicate when a colliding sample ranks above it; the first reason that applies is
recorded, and the reject names the best-ranked sample colliding for that reason. The original
need not be kept itself (a prompt duplicate's image still makes a worse copy of that image a
duplicate): the rule stays a function of pairs, so it needs no sequential pass and gives the same
answer for any order or split of the rows.

The score is measured after the gates (by the scorer stage), so the gates cannot rank on it
while rows stream in; a row already beaten on (a, b) by a colliding row is certain to lose, and
the gates turn it away before any model stage (so it is never scored in that layout, and may be
in another). So that this does not make the answer depend on the layout, the score of a row
that a colliding row beats on (a, b) is never read: such a row loses whatever its score, and it
ranks, as an original for others, as an unscored row.

`find_duplicates` applies the rule to a table of dedup keys with polars: exact keys by a group-by
(the group's best rank is the original); perceptual hashes by a banded join. The hash's bits are
cut into `max_distance + 1` bands; two hashes within `max_distance` bits differ in at most that
many bands, so they agree exactly on at least one (pigeonhole). Joining on each band and then
checking the full Hamming distance therefore finds every pair within the distance and no other:
complete and exact, without comparing all n² pairs.

`StreamingDedupIndex` answers the same question while rows stream in, for the cases it can
decide early: "an already-seen colliding sample ranks above this one on what the gates know" means
the sample is a duplicate under the rule whatever arrives later, so its model stages can be
skipped; the reason and original are decided by the end-of-run `find_duplicates` pass.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, NamedTuple

import polars as pl

from curation.core.reasons import IMAGE_DUPLICATE, IMAGE_NEAR_DUPLICATE, PROMPT_DUPLICATE, STAGE
from curation.core.records import Reject

# One row per sample that passed the other gates. prompt_key: hash of the normalised prompt;
# image_sha256: of the source image bytes (null without an image); phash: the perceptual hash
# as an unsigned integer (null without an image or with near-duplicates off); pixels, lossless,
# nbytes: the source image's width × height, whether its format is lossless, its encoded size
# (null without an image); score: the quality score that ranks copies (null: not measured).
SCHEMA = {"sample_id": pl.Utf8, "prompt_key": pl.Utf8, "image_sha256": pl.Utf8, "phash": pl.UInt64,
          "pixels": pl.UInt64, "lossless": pl.Boolean, "nbytes": pl.UInt64, "score": pl.Float64}

# Left rows joined per step of the banded join: bounds the candidate pairs held at once.
_JOIN_CHUNK = 10_000


class DedupRow(NamedTuple):
    sample_id: str
    prompt_key: str | None
    image_sha256: str | None
    phash: int | None
    pixels: int | None = None
    lossless: bool | None = None
    nbytes: int | None = None
    score: float | None = None


def size_key(row: DedupRow) -> tuple[int, int]:
    """(a, b) of the rank as a key where smaller is better: what the gates know for certain."""
    return (-(row.pixels or 0), -int(bool(row.lossless)))


def rank_key(row: DedupRow) -> tuple:
    """The whole rank as a key where smaller is better (a measured score before none)."""
    score = row.score
    return (*size_key(row), score is None, -(score or 0.0), -(row.nbytes or 0), row.sample_id)


class Duplicate(NamedTuple):
    reason: str
    original: str  # the best-ranked sample with the same key (or a hash within the distance)
    distance: int | None = None  # Hamming bits, for image_near_duplicate
    why: str | None = None  # which part of the rank put the original first
    kept: str | None = None  # where the original is itself a duplicate: the kept sample it leads to

    def to_reject(self, max_distance: int | None = None) -> Reject:
        if self.reason == PROMPT_DUPLICATE:
            detail = f"same prompt as {self.original}"
        elif self.reason == IMAGE_DUPLICATE:
            detail = f"same image bytes as {self.original}"
        else:
            detail = f"perceptual hash {self.distance} bits from {self.original} (threshold {max_distance})"
        if self.why:
            detail += f", kept for {self.why}" if self.kept is None else f", itself a duplicate of kept {self.kept}"
        return Reject(STAGE, self.reason, detail)


def why_first(better: DedupRow, worse: DedupRow) -> str:
    """The part of the rank that puts `better` before `worse`, in words (for the reject's detail)."""
    if (better.pixels or 0) != (worse.pixels or 0):
        return f"more pixels ({better.pixels or 0} > {worse.pixels or 0})"
    if bool(better.lossless) != bool(worse.lossless):
        return "a lossless format"
    if better.score != worse.score:
        return "a higher score" if worse.score is not None else "a measured score"
    if (better.nbytes or 0) != (worse.nbytes or 0):
        return f"more bytes ({better.nbytes or 0} > {worse.nbytes or 0})"
    return "a smaller sample id"


def bands(bits: int, max_distance: int) -> list[tuple[int, int]]:
    """`max_distance + 1` contiguous bit ranges covering `bits`, as (low bit, width)."""
    if not 0 <= max_distance < bits <= 64:
        raise ValueError(f"max_distance={max_distance} must be within [0, bits={bits}) and bits at most 64")
    n = max_distance + 1
    edges = [round(i * bits / n) for i in range(n + 1)]
    return [(lo, hi - lo) for lo, hi in zip(edges, edges[1:])]


def as_frame(rows: Iterable[DedupRow | tuple] | pl.DataFrame) -> pl.DataFrame:
    if isinstance(rows, pl.DataFrame):
        return rows.select([(pl.col(name) if name in rows.columns else pl.lit(None)).cast(dtype).alias(name)
                            for name, dtype in SCHEMA.items()])
    width = len(SCHEMA)  # rows of only the first keys (older callers) are padded with nulls
    return pl.DataFrame([row if len(row) == width else (*row, *(None,) * (width - len(row))) for row in rows],
                        schema=SCHEMA, orient="row")


def find_duplicates(rows: Iterable[DedupRow | tuple] | pl.DataFrame, *, max_distance: int | None,
                    bits: int = 64) -> dict[str, Duplicate]:
    """Every duplicate among `rows` (the rule above), by sample id; kept samples are absent."""
    frame = as_frame(rows)
    if frame["sample_id"].n_unique() != frame.height:
        raise ValueError("dedup rows must have one row per sample id (a shard was read twice?)")
    frame = frame.with_columns(pl.col("pixels").fill_null(0), pl.col("lossless").fill_null(False),
                               pl.col("nbytes").fill_null(0))
    if frame["score"].null_count() < frame.height:
        # A row beaten on size by a colliding row loses whatever its score: its score is not read.
        sized = frame.with_columns((-(pl.col("pixels").cast(pl.Int64) * 2 + pl.col("lossless").cast(pl.Int64)))
                                   .alias("order"))
        beaten = set(_colliding_better(sized, max_distance, bits)["sample_id"])
        frame = frame.with_columns(pl.when(pl.col("sample_id").is_in(list(beaten))).then(None)
                                   .otherwise(pl.col("score")).alias("score"))
    ranked = (frame.sort(["pixels", "lossless", "score", "nbytes", "sample_id"],
                         descending=[True, True, True, True, False], nulls_last=True)
              .with_row_index("order").with_columns(pl.col("order").cast(pl.Int64)))
    ids = ranked["sample_id"].to_list()
    found: dict[str, tuple] = {}
    for sample_id, reason, best, distance in _colliding_better(ranked, max_distance, bits).iter_rows():
        found[sample_id] = (reason, ids[best], distance)
    if not found:
        return {}
    by_id = {row[0]: DedupRow(*row) for row in
             ranked.filter(pl.col("sample_id").is_in(list({*found, *(o for _, o, _ in found.values())})))
             .select(list(SCHEMA)).iter_rows()}
    result = {}
    for sample_id, (reason, original, distance) in found.items():
        kept = original
        while kept in found:  # strictly better at each step: it ends
            kept = found[kept][1]
        result[sample_id] = Duplicate(reason, original, distance, why_first(by_id[original], by_id[sample_id]),
                                      None if kept == original else kept)
    return result


def _colliding_better(frame: pl.DataFrame, max_distance: int | None, bits: int) -> pl.DataFrame:
    """(sample_id, reason, best, distance) for every row that a colliding row beats on `order`
    (smaller is better): `best` is the best order among the rows colliding for the first reason
    that has one (prompt, image bytes, near hash)."""
    parts = [_exact(frame, "prompt_key").with_columns(pl.lit(PROMPT_DUPLICATE).alias("reason"), pl.lit(0).alias("step")),
             _exact(frame, "image_sha256").with_columns(pl.lit(IMAGE_DUPLICATE).alias("reason"), pl.lit(1).alias("step"))]
    if max_distance is not None:
        parts.append(_near(frame, max_distance, bits).with_columns(pl.lit(IMAGE_NEAR_DUPLICATE).alias("reason"),
                                                                   pl.lit(2).alias("step")))
    columns = ["sample_id", "reason", "best", "distance", "step"]
    found = pl.concat([p.with_columns(pl.col("distance").cast(pl.Int32), pl.col("step").cast(pl.Int32)).select(columns)
                       for p in parts])
    return (found.sort("sample_id", "step").group_by("sample_id", maintain_order=True).first()
            .select("sample_id", "reason", "best", "distance"))


def _exact(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """(sample_id, best, distance=null) for every row whose key a better-ranked row has too."""
    keyed = frame.select("sample_id", "order", column).drop_nulls(column)
    firsts = keyed.group_by(column).agg(pl.col("order").min().alias("best"))
    return (keyed.join(firsts, on=column).filter(pl.col("best") < pl.col("order"))
            .select("sample_id", "best", pl.lit(None, dtype=pl.Int32).alias("distance")))


def _near(frame: pl.DataFrame, max_distance: int, bits: int) -> pl.DataFrame:
    """(sample_id, best, distance): the best order whose hash is within the distance.

    Identical hashes are collapsed first (a group's best order stands for it), so a thousand
    copies of one image cost one row of the join, not a million pairs.
    """
    hashed = frame.select("sample_id", "order", "phash").drop_nulls("phash")
    groups = hashed.group_by("phash").agg(pl.col("order").min().alias("first"))
    band_exprs = [((pl.col("phash") // pl.lit(1 << lo, dtype=pl.UInt64)) & pl.lit((1 << width) - 1, dtype=pl.UInt64))
                  .alias(f"band{i}") for i, (lo, width) in enumerate(bands(bits, max_distance))]
    groups = groups.with_columns(band_exprs)

    # For each distinct hash: the best `first` among the OTHER distinct hashes within reach.
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
        best = pl.DataFrame(schema={"phash": pl.UInt64, "other_first": pl.Int64, "distance": pl.Int32})

    # A sample's original: its own hash group's first (distance 0) or a near group's first,
    # whichever ranks better, and only if it ranks better than the sample itself.
    candidates = pl.concat([
        groups.select("phash", pl.col("first").alias("other_first"), pl.lit(0, dtype=pl.Int32).alias("distance")),
        best.with_columns(pl.col("other_first").cast(groups["first"].dtype)),
    ])
    return (hashed.join(candidates, on="phash")
            .filter(pl.col("other_first") < pl.col("order"))
            .sort("sample_id", "other_first", "distance")
            .group_by("sample_id", maintain_order=True).first()
            .select("sample_id", pl.col("other_first").alias("best"), "distance"))


def _smallest(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per hash, the pair with the best other order (then the smallest distance)."""
    return (pairs.sort("phash", "other_first", "distance")
            .group_by("phash", maintain_order=True).first())


class StreamingDedupIndex:
    """While rows stream in: does an already-seen colliding sample rank above this one for sure?

    What the gates know of the rank: (a, b) always; the rest too when no score ranks copies
    (`scored=False`: then the whole rank is known here). True means the end-of-run pass will
    reject the sample (for some reason, naming some original), so the executor may skip its model
    stages; False decides nothing yet, since a better row may still arrive. Consistent with
    `find_duplicates`: add every row that passed the other gates, whatever the answer for it.
    """

    def __init__(self, *, max_distance: int | None, bits: int = 64, scored: bool = False):
        self.max_distance = max_distance
        self.scored = scored
        self._prompts: dict[str, tuple] = {}  # key -> (best gate key seen with it, its sample id)
        self._images: dict[str, tuple] = {}
        self._bands = bands(bits, max_distance) if max_distance is not None else []
        # Per band: band value -> {hash: (best gate key, sample id) with that hash}.
        self._tables: list[dict[int, dict[int, tuple]]] = [defaultdict(dict) for _ in self._bands]

    def _key(self, row: DedupRow) -> tuple:
        if self.scored:
            return size_key(row)
        return rank_key(row._replace(score=None))

    def collides_with_smaller(self, row: DedupRow) -> bool:
        return self.first_collision(row) is not None

    def first_collision(self, row: DedupRow) -> Duplicate | None:
        """The rule applied to the rows seen so far, on what the gates know: the reason and the best
        seen original, or None. Not None means the sample is a duplicate for good; the end-of-run
        pass, which sees every row and its score, may still name another original (or an earlier
        reason) for it."""
        row = DedupRow(*row)
        own = self._key(row)
        for key, table, reason in ((row.prompt_key, self._prompts, PROMPT_DUPLICATE),
                                   (row.image_sha256, self._images, IMAGE_DUPLICATE)):
            if key is not None and key in table and table[key][0] < own:
                return Duplicate(reason, table[key][1])
        if row.phash is None or self.max_distance is None:
            return None
        best: tuple | None = None
        for table, (lo, width) in zip(self._tables, self._bands):
            for other, (rank, first) in table.get((row.phash >> lo) & ((1 << width) - 1), {}).items():
                distance = (other ^ row.phash).bit_count()
                if rank < own and distance <= self.max_distance and (best is None or (rank, distance) < best[:2]):
                    best = (rank, distance, first)
        return None if best is None else Duplicate(IMAGE_NEAR_DUPLICATE, best[2], best[1])

    def add(self, row: DedupRow) -> None:
        row = DedupRow(*row)
        entry = (self._key(row), row.sample_id)
        if row.prompt_key is not None:
            self._prompts[row.prompt_key] = min(entry, self._prompts.get(row.prompt_key, entry))
        if row.image_sha256 is not None:
            self._images[row.image_sha256] = min(entry, self._images.get(row.image_sha256, entry))
        if row.phash is not None and self.max_distance is not None:
            for table, (lo, width) in zip(self._tables, self._bands):
                bucket = table[(row.phash >> lo) & ((1 << width) - 1)]
                bucket[row.phash] = min(entry, bucket.get(row.phash, entry))
