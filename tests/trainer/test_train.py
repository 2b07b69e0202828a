"""`python -m curation.train model=tiny`: it learns, and a resumed run repeats an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

import pytest

from curation.train import main

def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# Small and quick: one worker-less process, a budget that fits the rows used.
QUICK = ["model=tiny", "num_workers=0", "log_every=1000", "train_model.optim.warmup_steps=10"]


def test_tiny_model_lowers_text_and_image_loss(offline_dataset, tmp_path):
    # initial_full_learning carries both targets (thinking text and image) in rows of ~1.4K byte tokens.
    out = main([f"data={offline_dataset}", "stage=1", "steps=30", f"out={tmp_path}/run", *QUICK,
                "modes={initial_full_learning:1.0}", "train_model.max_tokens_per_batch=1536",
                "train_model.max_tokens_per_sample=1536", "train_model.arch.dim=64", "train_model.optim.lr=2e-3"])
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, 31))
    for loss, factor in (("ce", 0.7), ("mse", 0.85)):
        first, last = mean(m[loss] for m in metrics[:5]), mean(m[loss] for m in metrics[-5:])
        assert last < factor * first, f"{loss}: {first:.3f} → {last:.3f}"
    assert (out / "checkpoints" / "step_00000030.pt").is_file()


def run(data, out, steps, *extra):
    return main([f"data={data}", "stage=1", f"steps={steps}", f"out={out}", "save_every=5", "log_samples=true",
                 "model=tiny", "num_workers=2", "log_every=1000", "train_model.max_tokens_per_batch=700",
                 "train_model.max_tokens_per_sample=700", "train_model.arch.dim=64",
                 "train_model.optim.ema=0.5", *extra])  # a short memory: stage 2 starts from the EMA weights


@pytest.fixture(scope="module")
def uninterrupted(handmade_dataset, tmp_path_factory):
    return run(handmade_dataset, tmp_path_factory.mktemp("whole"), 11)


def test_resume_repeats_sample_order_and_loss_curve(handmade_dataset, uninterrupted, tmp_path):
    # A run of 7 steps (checkpoints at 5 and 7), then the same command with 11 steps: it resumes
    # after an odd number of batches, so the two data-loader workers must swap turns.
    run(handmade_dataset, tmp_path, 7)
    run(handmade_dataset, tmp_path, 11)

    whole, resumed = read_jsonl(uninterrupted / "metrics.jsonl"), read_jsonl(tmp_path / "metrics.jsonl")
    assert [m["step"] for m in resumed] == list(range(1, 12))
    def losses(record):  # a batch without a target image has no "mse"
        return {k: record[k] for k in ("ce", "mse") if k in record}

    for a, b in zip(whole, resumed):
        assert losses(b) == pytest.approx(losses(a), rel=1e-5)
    assert read_jsonl(tmp_path / "samples-rank0.jsonl") == read_jsonl(uninterrupted / "samples-rank0.jsonl")


def test_stage_two_starts_from_stage_one_weights(handmade_dataset, uninterrupted, tmp_path):
    fresh = run(handmade_dataset, tmp_path / "fresh", 1, "stage=2")
    warm = run(handmade_dataset, tmp_path / "warm", 1, "stage=2", f"init_from={uninterrupted}")
    assert read_jsonl(warm / "metrics.jsonl")[0]["ce"] < read_jsonl(fresh / "metrics.jsonl")[0]["ce"]
