"""`shard=i num_shards=N` parts are disjoint, cover the samples once, and merge to the same bytes."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from curation.writer import manifest

from curation.core import schema
from curation.merge import main as merge_main
from curation.writer.merge import MergeError
from tests.helpers import build, shard_digests


def _ids(folder, mode):
    return [i for p in sorted((folder / "data" / mode).glob("*.parquet"))
            for i in pq.read_table(p, columns=["sample_id"]).column("sample_id").to_pylist()]


def test_parts_are_disjoint_and_merge_equals_single_process(tmp_path):
    single = build(tmp_path, "recipe=all", "n=10", out="single", cache="c1")
    for i in range(3):
        build(tmp_path, "recipe=all", "n=10", f"shard={i}", "num_shards=3", out="sharded", cache="c2")
    parts = sorted((tmp_path / "sharded" / "parts").iterdir())
    assert len(parts) == 3
    for mode in schema.MODE_KEYS:
        seen = [set(_ids(p, mode)) for p in parts]
        assert sum(len(s) for s in seen) == len(set().union(*seen))  # disjoint
        assert set().union(*seen) == set(_ids(single, mode))
    merged = merge_main([f"out={tmp_path / 'sharded'}"])
    assert shard_digests(merged) == shard_digests(single)
    a, b = manifest.read(single), manifest.read(merged)
    for mode in schema.MODE_KEYS:
        for key in ("sourced", "accepted", "rejected", "rejects_by_reason"):
            assert a["modes"][mode][key] == b["modes"][mode][key]


def test_merge_refuses_missing_parts(tmp_path):
    build(tmp_path, "recipe=initial_thinking", "n=4", "shard=0", "num_shards=2", out="ds")
    with pytest.raises(MergeError, match="missing"):
        merge_main([f"out={tmp_path / 'ds'}"])


def test_a_merged_run_keeps_the_quality_summary_of_one_process(tmp_path):
    """Score histograms and check counts of the parts add up to exactly the one-process summary."""
    single = build(tmp_path, "recipe=all", "n=12", "scorer=offline", out="single", cache="c1")
    for i in range(3):
        build(tmp_path, "recipe=all", "n=12", "scorer=offline", f"shard={i}", "num_shards=3", out="sharded", cache="c2")
    merged = merge_main([f"out={tmp_path / 'sharded'}"])
    a, b = manifest.read(single), manifest.read(merged)
    assert a["quality"] is not None and a["quality"] == b["quality"]
    parts = [manifest.read(p) for p in sorted((tmp_path / "sharded" / "parts").iterdir())]
    checked = [p["quality"]["modes"]["improving_full_learning"]["checks"]["improvement"]["checked"] for p in parts]
    assert sum(checked) == 12 and max(checked) < 12  # the parts really split the samples
    assert (merged / "assets" / "quality_accept_rate.png").read_bytes() == (single / "assets" / "quality_accept_rate.png").read_bytes()
