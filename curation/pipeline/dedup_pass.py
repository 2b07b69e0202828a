"""The end-of-run dedup pass: every duplicate of the run, by one rule over all its rows.

Runs once the executor has walked every sample, over the dedup keys the gates recorded (one row
per sample that passed the per-row checks; `pipeline/dedup.py` has the rule), and, when
`gates.semantic_duplicate_similarity` is set, over the high-quality images' embeddings
(`pipeline/semantic_dedup.py`: cosine similarity at or above it with a smaller sample id). The
result maps a sample id to its gates reject; emit applies it in every mode that takes the
sample. `curation.merge` runs the same pass over every part's keys.
"""

from __future__ import annotations

from typing import Iterable

import polars as pl

from curation.pipeline.dedup import SCHEMA, find_duplicates
from curation.pipeline.gates import GateSettings
from curation.pipeline.semantic_dedup import decode_embedding, find_semantic_duplicates
from curation.core.reasons import SEMANTIC_DUPLICATE, STAGE
from curation.core.records import Reject

KEYS_FILE = "dedup-keys.parquet"  # a part's keys, for curation.merge


def find_run_duplicates(keys: Iterable[tuple[tuple, str | None]], settings: GateSettings) -> dict[str, Reject]:
    """`keys`: (dedup row, embedding or None) per sample, in any order."""
    return duplicates_of(*keys_frame(keys), settings)


def duplicates_of(frame: pl.DataFrame, embeddings: list[tuple[str, str]], settings: GateSettings) -> dict[str, Reject]:
    found = {sample_id: dup.to_reject(settings.near_duplicate_distance)
             for sample_id, dup in find_duplicates(frame, max_distance=settings.near_duplicate_distance,
                                                   bits=settings.hash_size ** 2).items()}
    if settings.semantic_duplicate_similarity is not None and embeddings:
        # Among the rows no other gate turned away (the rule of semantic_dedup.py).
        kept = sorted((sid, decode_embedding(text)) for sid, text in embeddings if sid not in found)
        for sample_id, (_, original) in find_semantic_duplicates(kept, settings.semantic_duplicate_similarity).items():
            found[sample_id] = Reject(STAGE, SEMANTIC_DUPLICATE,
                                      f"embedding cosine ≥ {settings.semantic_duplicate_similarity} with {original}")
    return found


def keys_frame(keys: Iterable[tuple[tuple, str | None]]) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """The dedup rows as a table, and the (sample id, embedding) pairs of those that have one."""
    rows, embeddings = [], []
    for row, embedding in keys:
        rows.append(row)
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
    embeddings = [(sid, e) for sid, e in table.select("sample_id", "embedding").iter_rows() if e is not None]
    return table.select(list(SCHEMA)), embeddings
