"""Semantic dedup: exact against a brute-force reading of the rule, in any order and block size."""

from __future__ import annotations

import numpy as np
import pytest

from curation.pipeline.semantic_dedup import (REASON, decode_embedding, encode_embedding,
                                           find_semantic_duplicates)


def brute_force(rows, threshold):
    """The rule, read literally: the smallest earlier id with cosine >= threshold is the original."""
    rows = sorted(rows, key=lambda r: r[0])
    unit = [(sid, np.asarray(v, dtype=np.float32) / np.linalg.norm(np.asarray(v, dtype=np.float32)))
            for sid, v in rows]
    out = {}
    for i, (sid, v) in enumerate(unit):
        for other, w in unit[:i]:
            if float(v @ w) >= threshold:
                out[sid] = (REASON, other)
                break
    return out


def clustered_rows(seed=0, n=300, dim=16):
    """Random vectors plus planted near-copies (small noise) of some of them, under shuffled ids."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim))
    copies = base[rng.integers(0, n, size=n // 3)] + rng.normal(scale=0.05, size=(n // 3, dim))
    vectors = np.concatenate([base, copies])
    ids = [f"{x:016x}" for x in rng.choice(2**40, size=len(vectors), replace=False)]
    return list(zip(ids, vectors))


@pytest.mark.parametrize("block_size", [1, 7, 64, 4096])
def test_matches_the_rule_for_every_block_size(block_size):
    rows = clustered_rows()
    expected = brute_force(rows, 0.95)
    assert len(expected) >= 90  # the planted copies (and nothing by chance at 16 dims)
    assert find_semantic_duplicates(rows, 0.95, block_size=block_size) == expected


def test_order_of_rows_does_not_matter():
    rows = clustered_rows(seed=1)
    shuffled = [rows[i] for i in np.random.default_rng(5).permutation(len(rows))]
    assert find_semantic_duplicates(shuffled, 0.9, block_size=32) == find_semantic_duplicates(rows, 0.9)


def test_first_by_sample_id_is_kept_and_named():
    a = [1.0, 0.0, 0.0]
    rows = [("c", [1.0, 0.01, 0.0]), ("a", a), ("b", [0.0, 1.0, 0.0]), ("d", [1.0, 0.0, 0.02])]
    assert find_semantic_duplicates(rows, 0.99) == {"c": (REASON, "a"), "d": (REASON, "a")}


def test_a_duplicate_still_counts_as_an_earlier_sample():
    """a ~ b and b ~ c but not a ~ c: b is a's duplicate and c is b's (the rule is not greedy)."""
    angle = np.deg2rad(30)
    a, b, c = [1, 0], [np.cos(angle), np.sin(angle)], [np.cos(2 * angle), np.sin(2 * angle)]
    threshold = np.cos(np.deg2rad(35))
    assert find_semantic_duplicates([("a", a), ("b", b), ("c", c)], threshold) == {"b": (REASON, "a"),
                                                                                   "c": (REASON, "b")}


def test_threshold_is_inclusive_and_scale_free():
    rows = [("a", [3.0, 4.0]), ("b", [6.0, 8.0]), ("c", [4.0, -3.0])]  # b = 2a: cosine exactly 1
    assert find_semantic_duplicates(rows, 1.0) == {"b": (REASON, "a")}


def test_float16_embeddings_round_trip_and_are_compared_as_stored():
    rows = clustered_rows(seed=2, n=100)
    stored = [(sid, decode_embedding(encode_embedding(v))) for sid, v in rows]
    assert all(v.dtype == np.float16 and v.shape == (16,) for _, v in stored)
    assert find_semantic_duplicates(stored, 0.95, block_size=16) == brute_force(stored, 0.95)


def test_bad_input_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="repeat"):
        find_semantic_duplicates([("a", [1, 0]), ("a", [0, 1])], 0.9)
    with pytest.raises(ValueError, match="zero"):
        find_semantic_duplicates([("a", [1, 0]), ("b", [0, 0])], 0.9)
    with pytest.raises(ValueError, match="one length"):
        find_semantic_duplicates([("a", [1, 0]), ("b", [0, 1, 0])], 0.9)
    with pytest.raises(ValueError, match="cosine"):
        find_semantic_duplicates([("a", [1, 0])], 1.5)
    assert find_semantic_duplicates([], 0.9) == {}


def test_a_rank_decides_which_copy_is_the_original():
    """With a rank (the run's dedup rank) the best-ranked of similar rows is kept, whatever its id."""
    rows = [("a", [1.0, 0.0]), ("b", [0.99, 0.05]), ("c", [0.0, 1.0])]
    rank = {"a": 2, "b": 0, "c": 1}
    assert find_semantic_duplicates(rows, 0.95) == {"b": (REASON, "a")}
    assert find_semantic_duplicates(rows, 0.95, rank=rank.__getitem__) == {"a": (REASON, "b")}
