"""Two processes under torchrun (gloo): their samples are disjoint and together make the epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

FULL_MODES = ("initial_full_learning", "improving_full_learning")


def test_two_ranks_split_the_epoch(handmade_dataset, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "curation.train", f"data={handmade_dataset}", "stage=2", "model=tiny", "steps=14",
           f"out={out}", "num_workers=2", "log_samples=true", "dist_backend=gloo", "save_every=1000",
           "train_model.max_tokens_per_batch=700", "train_model.max_tokens_per_sample=700",
           "train_model.arch.dim=32", "train_model.arch.layers=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=Path(__file__).parents[2], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    seen = {}
    for rank in (0, 1):
        lines = (out / f"samples-rank{rank}.jsonl").read_text().splitlines()
        seen[rank] = [tuple(key) for line in lines for key in json.loads(line)["keys"]]
        assert len(lines) == 14
    assert not set(seen[0]) & set(seen[1])
    for mode in FULL_MODES:
        expected = set(pq.read_table(handmade_dataset / "data" / mode, columns=["sample_id"])["sample_id"].to_pylist())
        first_epoch = {rank: [sid for m, epoch, sid in keys if m == mode and epoch == 0] for rank, keys in seen.items()}
        assert not set(first_epoch[0]) & set(first_epoch[1])
        assert set(first_epoch[0]) | set(first_epoch[1]) == expected
        for rank in (0, 1):  # and no row twice within a rank's share of the epoch
            assert len(first_epoch[rank]) == len(set(first_epoch[rank]))
    assert (out / "checkpoints" / "step_00000014.pt").is_file()
