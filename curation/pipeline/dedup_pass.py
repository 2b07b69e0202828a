"""The end-of-run dedup pass: every duplicate of the run, by one rule over all its rows.

Runs once the executor has walked every sample, over the dedup keys the gates recorded (one row
per sample that passed the per-row checks; `pipeline/dedup.py` has the rule) with each row's
preference score read from its high-quality image's scores where the scorer measured it, and,
when `gates.semantic_duplicate_similarity` is set, over the high-quality images' embeddings
(`pipeline/semantic_dedup.py`: cosine similarity at or above it with a better-ranked sample, in
the same rank). The result maps a sample id to its gates reject; emit applies it in every mode
that takes the sample. `curation.merge` runs the same pass over every part's keys.
"""

from __future__ import annotations

from typing import Iterable

import polars as pl

from curation.pipeline.dedup import SCHEMA, DedupRow, find_duplicates, rank_key
from curation.pipeline.gates import GateSettings
from curation.pipeline.semantic_dedup import decode_embedding, find_semantic_duplicates
from curation.core.reasons import SEMANTIC_DUPLICATE, STAGE
from curation.core.records import Reject

KEYS_FILE = "dedup-keys.parquet"  # a part's keys, for curation.merge


# The score that ranks same-size copies: the preference score (PickScore, the offline world's), a
# judgement of the prompt–image pair, which is what a training row is: of two images for one prompt
# it prefers the one that answers the prompt and looks better; of one image under two prompts, the
# prompt that describes it. An aesthetic score sees the image alone (equal for two copies of one
# picture) and an alignment score ignores how it looks.
DEDUP_SCORE = "preference"


def find_run_duplicates(keys: Iterable[tuple], settings: GateSettings) -> dict[str, Reject]:
    """`keys`: (dedup row, embedding or None, hq image scores or None) per sample, in any order."""
    return duplicates_of(*keys_frame(keys), settings)


def duplicates_of(frame: pl.DataFrame, embeddings: list[tuple[str, str]], settings: GateSettings) -> dict[str, Reject]:
    found = {sample_id: dup.to_reject(settings.near_duplicate_distance)
             for sample_id, dup in find_duplicates(frame, max_distance=settings.near_duplicate_distance,
                                                   bits=settings.hash_size ** 2).items()}
    if settings.semantic_duplicate_similarity is not None and embeddings:
        # Among the rows no other gate turned away (the rule of semantic_dedup.py), in the same rank:
        # none of them was beaten on size by a colliding row, so every score read here was measured
        # whatever the layout.
        left = {sid for sid, _ in embeddings if sid not in found}
        rank = {row[0]: rank_key(DedupRow(*row)) for row in frame.filter(pl.col("sample_id").is_in(list(left)))
                .select(list(SCHEMA)).iter_rows()}
        kept = [(sid, decode_embedding(text)) for sid, text in embeddings if sid in left]
        for sample_id, (_, original) in find_semantic_duplicates(kept, settings.semantic_duplicate_similarity,
                                                                 rank=rank.__getitem__).items():
            found[sample_id] = Reject(STAGE, SEMANTIC_DUPLICATE,
                                      f"embedding cosine ≥ {settings.semantic_duplicate_similarity} with {original}")
    return found


def keys_frame(keys: Iterable[tuple]) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """The dedup rows as a table, each with its high-quality image's DEDUP_SCORE where the scorer
    measured one, and the (sample id, embedding) pairs of those that have one."""
    rows, embeddings = [], []
    for row, embedding, scores in keys:
        value = scores.get(DEDUP_SCORE) if scores else None
        rows.append(tuple(DedupRow(*row)._replace(score=None if value is None else float(value))))
        if embedding is not None:
            embeddings.append((row[0], embedding))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row"), embeddings


def write_keys(path, frame: pl.DataFrame, embeddings: list[tuple[str, str]]) -> None:
    """A part's keys (and embeddings) for `curation.merge`."""
    extra = pl.DataFrame(embeddings, schema={"sample_id": pl.Utf8, "embedding": pl.Utf8}, orient="row")
    frame.join(extra, on="sample_id", how="left").sort("sample_id").write_parquet(path)


def read_keys(paths) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """Every part's keys as one table, and the embeddings among them."""
    table = pl.concat([pl.read_parquet(p) for p in paths])
    missing = [name for name in SCHEMA if name not in table.columns]
    if missing:
        raise ValueError(f"the parts' dedup keys lack {', '.join(missing)}: rebuild the parts with this version")
    embeddings = [(sid, e) for sid, e in table.select("sample_id", "embedding").iter_rows() if e is not None]
    return table.select(list(SCHEMA)), embeddings
