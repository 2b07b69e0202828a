"""Semantic dedup: near-duplicate images by the cosine similarity of their embeddings.

The rule, independent of how the source is sharded or ordered: a sample is a duplicate when some
sample that ranks before it, among the rows given, has cosine similarity ≥ `threshold` with
it; the first such sample (the best-ranked) is named as its original. The rank is the dedup rank
of `pipeline/dedup.py` (more pixels, lossless, higher score, more bytes, smaller id) in a run, or
the sample id alone when no rank is given. The rows given are the
samples that passed every other check, so a sample dropped for another reason never makes
another one a duplicate. (The rule is not "greedy": a duplicate still counts as an earlier
sample for later ones, which is what makes the answer a pure function of the set of rows.)

Exact, in blocks: rows are sorted by rank and compared block against all earlier blocks by matrix
products, so memory is the embeddings themselves (N × d in their own precision: 300K float16
768-d embeddings are 460 MB) plus one block × block similarity matrix.

The quality stage records each high-quality image's embedding as `hq_image_embedding`, a float16
vector in base64 (`encode_embedding` / `decode_embedding`), for the end-of-run dedup pass to read.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from curation.core.reasons import SEMANTIC_DUPLICATE as REASON

DEFAULT_BLOCK = 4096


def encode_embedding(vector: Sequence[float]) -> str:
    """A compact copy: float16, little-endian, base64 (768 dims → 2 KB of text)."""
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def decode_embedding(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2")


def find_semantic_duplicates(rows: Iterable[tuple[str, Sequence[float]]], threshold: float, *,
                             block_size: int = DEFAULT_BLOCK,
                             rank: Callable[[str], Any] | None = None) -> dict[str, tuple[str, str]]:
    """`{sample_id: (REASON, original_sample_id)}` for every duplicate among `rows`.

    `rank(sample_id)` is a sort key, smaller first, total over the rows (default: the id itself).
    `rows` are `(sample_id, embedding)` in any order; embeddings need not be normalised (each is
    divided by its norm). A zero vector, or ids that repeat, or embeddings of different lengths,
    are errors: a caller that passes them has a bug, and a guess here would hide it.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not a cosine similarity in [-1, 1]")
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    order = rank or (lambda sid: sid)
    pairs = sorted(((sid, np.asarray(vec)) for sid, vec in rows), key=lambda p: (order(p[0]), p[0]))
    if not pairs:
        return {}
    ids = [sid for sid, _ in pairs]
    if len(set(ids)) != len(ids):
        raise ValueError("sample ids repeat: each sample may appear once")
    dims = {vec.shape for _, vec in pairs}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        raise ValueError(f"embeddings must be vectors of one length, got shapes {sorted(dims)}")
    dtype = np.float16 if all(vec.dtype == np.float16 for _, vec in pairs) else np.float32
    matrix = np.stack([vec.astype(dtype, copy=False) for _, vec in pairs])
    del pairs
    norms = np.linalg.norm(matrix.astype(np.float32), axis=1) if dtype == np.float16 else np.linalg.norm(matrix, axis=1)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        bad = ids[int(np.flatnonzero((norms == 0) | ~np.isfinite(norms))[0])]
        raise ValueError(f"the embedding of {bad} is zero or not finite")

    def unit(start: int, stop: int) -> np.ndarray:
        return matrix[start:stop].astype(np.float32) / norms[start:stop, None]

    n = len(ids)
    duplicates: dict[str, tuple[str, str]] = {}
    for q0 in range(0, n, block_size):
        q1 = min(n, q0 + block_size)
        queries = unit(q0, q1)
        first = np.full(q1 - q0, -1, dtype=np.int64)  # smallest earlier index above the threshold
        for k0 in range(0, q1, block_size):  # only earlier blocks, and this block's lower triangle
            k1 = min(q1, k0 + block_size)
            sims = queries @ unit(k0, k1).T
            hits = sims >= threshold
            rows = np.arange(q0, q1)[:, None]
            hits &= np.arange(k0, k1)[None, :] < rows  # an original comes strictly earlier
            found = hits.any(axis=1) & (first < 0)
            if found.any():
                first[found] = k0 + hits[found].argmax(axis=1)
        for offset in np.flatnonzero(first >= 0):
            duplicates[ids[q0 + offset]] = (REASON, ids[int(first[offset])])
    return duplicates
