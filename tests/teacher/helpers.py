"""Helpers of the teacher tests: run overrides and dataset readers."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq

from tests.support.fake_openai import MODEL


def server_teacher(url: str, model: str = MODEL, *, timeout_s: float = 5.0, max_attempts: int = 5,
                   api: str = "vllm") -> list[str]:
    """Overrides for `teacher=vllm_server` at `url`, with short waits so fault tests stay fast
    (`api=transformers` for `transformers serve`, which takes the sampling as one generation_config)."""
    return ["teacher=vllm_server", f"teacher.base_url={url}/v1", f"teacher.model={model}", f"teacher.api={api}",
            f"teacher.http.timeout_s={timeout_s}", f"teacher.http.max_attempts={max_attempts}",
            "teacher.http.backoff_initial_s=0.01", "teacher.http.backoff_max_s=0.05",
            "teacher.http.probe_timeout_s=2", "checker=none"]


def rows(out: Path, mode: str) -> list[dict]:
    """The mode's rows, whole, lineage parsed."""
    return [{**row, "lineage": json.loads(row["lineage"])}
            for path in sorted((out / "data" / mode).glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def shard_bytes(out: Path) -> dict[str, str]:
    """sha256 of every file a dataset publishes as data (shards and rejects), by relative path."""
    files = sorted((out / "data").rglob("*.parquet")) + sorted((out / "rejects").rglob("*.parquet"))
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def stored_rejects(cache: Path) -> list[dict]:
    """Every reject the store holds as a stage's result (what a later run would reuse)."""
    with sqlite3.connect(cache / "store.sqlite") as db:
        values = [json.loads(value) for (value,) in db.execute("SELECT value FROM results")]
    return [v for v in values if v.get("reject")]


def rejects(out: Path, mode: str) -> list[dict]:
    return [r for r in pq.read_table(out / "rejects" / "rejects.parquet").to_pylist() if r["mode"] == mode]


def assert_each_sample_once(out: Path, mode: str, sourced: int) -> None:
    """Every sample ends accepted or rejected with a reason, and none twice."""
    accepted = [r["sample_id"] for r in rows(out, mode)]
    rejected = [r["sample_id"] for r in rejects(out, mode)]
    assert len(set(accepted)) == len(accepted) and len(set(rejected)) == len(rejected)
    assert not set(accepted) & set(rejected)
    assert len(accepted) + len(rejected) == sourced
    assert all(r["reason"] and r["stage"] for r in rejects(out, mode))


def initial_request(prompt: str, image, seed: int):
    """The chat the initial_thinking stage sends: its own template, the prompt and the high-quality image."""
    from curation.backends.base import ChatRequest
    from curation.pipeline.stages.initial_thinking import InitialThinking

    return ChatRequest(InitialThinking().chat_template, {"prompt": prompt}, {"hq_image": image}, seed)


def improving_request(prompt: str, initial_thinking: str, initial_image, hq_image, seed: int):
    """The chat the improving_thinking stage sends."""
    from curation.backends.base import ChatRequest
    from curation.pipeline.stages.improving_thinking import ImprovingThinking

    return ChatRequest(ImprovingThinking().chat_template,
                       {"prompt": prompt, "improving_initial_thinking": initial_thinking},
                       {"initial_image": initial_image, "hq_image": hq_image}, seed)
