"""Helpers of the real-engine tests: runs of `python -m curation.run` as subprocesses, hooks that
kill a process when a given request reaches the server, and a source with one over-long prompt."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from curation.writer import manifest
from tests.real_engine.conftest import MAX_MODEL_LEN
from tests.support.fault_proxy import Call, Fault, Reset
from tests.support.vllm_server import ENGINE_ENV

REPO = Path(__file__).resolve().parents[2]
# Every mode; small images (one 28x28 grid cell... four tokens each); short answers (the model's
# answer is one token and <|im_end|>).
SMALL = ["recipe=all", "n=8", "image_size=64", "checker=none", "run.progress_interval_s=60",
         "teacher.sampling.max_tokens=8"]
MODES = ("initial_thinking_understanding_learning", "initial_thinking_generation_learning", "initial_full_learning",
         "improving_thinking_understanding_learning", "improving_thinking_generation_learning",
         "improving_full_learning")


def server_teacher(url: str, model: Path) -> list[str]:
    """`teacher=vllm_server` at `url` (no /v1), with waits short enough for a test."""
    return ["teacher=vllm_server", f"teacher.base_url={url}/v1", f"teacher.model={model}", "teacher.concurrency=4",
            "teacher.http.timeout_s=120", "teacher.http.max_attempts=3", "teacher.http.backoff_initial_s=0.05",
            "teacher.http.backoff_max_s=0.2"]


def inprocess_teacher(model: Path) -> list[str]:
    """`teacher=vllm` on the CPU build: the engine flags of tests/support/vllm_server.py, as engine args."""
    return ["teacher=vllm", f"teacher.model={model}", f"teacher.engine.max_model_len={MAX_MODEL_LEN}",
            "teacher.engine.max_num_seqs=16", "teacher.concurrency=16", "+teacher.engine.enforce_eager=true",
            "+teacher.engine.enable_chunked_prefill=false", "+teacher.engine.dtype=float32"]


def command(python: str, tmp: Path, *overrides: str, out: str = "ds", cache: str = "cache") -> list[str]:
    return [python, "-m", "curation.run", *overrides, f"out={tmp / out}", f"cache={tmp / cache}"]


def environment() -> dict[str, str]:
    # The checkout's code, whichever venv runs it (the real-engine venv holds only the dependencies).
    return {**os.environ, **ENGINE_ENV, "PYTHONPATH": str(REPO)}


def run(cmd: list[str], log: Path, timeout_s: float = 900) -> subprocess.CompletedProcess:
    """Run `cmd` from the checkout, its output appended to `log` (named in a failed assertion)."""
    with open(log, "ab") as fh:
        return subprocess.run(cmd, cwd=REPO, env=environment(), stdout=fh, stderr=subprocess.STDOUT,
                              timeout=timeout_s)


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    """Start `cmd` in a process group of its own (kill -9 then reaches an in-process engine core too)."""
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, cwd=REPO, env=environment(), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


class OnRequest:
    """A FaultProxy plan that calls `action` once, when the `nth` chat request arrives, before
    forwarding it; after that, every request gets `after` (None: forwarded; Reset(): the
    connection dropped, as by a dead server) until `reset()`."""

    def __init__(self, nth: int, action: Callable[[], None], after: Fault | None = None):
        self.nth, self.action, self.after = nth, action, after
        self.chats = 0
        self.fired = threading.Event()
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.after = None

    def __call__(self, call: Call) -> Fault | None:
        with self._lock:
            if call.path.endswith("/chat/completions"):
                self.chats += 1
                if self.chats == self.nth and not self.fired.is_set():
                    self.action()
                    self.fired.set()
            return self.after if self.fired.is_set() else None


def published(out: Path) -> bool:
    """Whether a dataset (any part of one) was published at `out`: anything but the writer's staging folder."""
    return out.exists() and any(not entry.name.startswith(".staging") for entry in out.iterdir())


def stored_thinkings(cache: Path) -> int:
    """Teacher results the store holds (read while the run writes: SQLite in WAL mode allows it)."""
    db = cache / "store.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT count(*) FROM results WHERE stage LIKE '%thinking'").fetchone()[0]
    except sqlite3.Error:  # created but not yet holding the table
        return 0


def source_with_a_long_prompt(folder: Path, normal: int, long_chars: int = 1900) -> tuple[list[str], str]:
    """A folder source (index.jsonl, prompt + image) of `normal` prompts of the offline world's grammar and,
    last, one over-long prompt (within the gates' 2,000 characters, over MAX_MODEL_LEN tokens)."""
    from PIL import Image

    from curation.world.scene import sample_scene, scene_to_prompt

    folder.mkdir(parents=True, exist_ok=True)
    prompts = [scene_to_prompt(sample_scene(np.random.default_rng([7, i]))) for i in range(normal)]
    filler = "in a softly lit room with an intricately carved wooden floor"
    long_prompt = prompts[0]
    while len(long_prompt) + len(filler) + 2 <= long_chars:
        long_prompt += ", " + filler
    rng = np.random.default_rng(7)
    rows = []
    for i, prompt in enumerate([*prompts, long_prompt]):
        # Noise, so that no two images are near-duplicates for the gates' perceptual hash.
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        rows.append({"prompt": prompt, "image": f"{i}.png"})
    (folder / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return prompts, long_prompt


def assert_teacher_costed(ds: Path, kind: str) -> None:
    """The card's GPU-hours table costs the real teacher as measured (`kind`: "server" or "in-process"),
    while the offline world's images stay labelled simulated."""
    doc = manifest.read(ds)
    g = doc["run"]["gpu_hours"]
    teacher = g["roles"]["teacher"]
    assert teacher["basis"] == "measured" and teacher["gpu_s"] > 0, teacher
    assert teacher["assumption"].startswith(f"{kind}:") and "assumed: set cost.gpus.teacher" in teacher["assumption"]
    assert g["roles"]["generator"]["basis"] == "simulated" and g["total"]["basis"] == "partly simulated"
    accepted = sum(m["accepted"] for m in doc["modes"].values())
    assert g["accepted_rows"] == accepted and abs(teacher["per_1k_accepted"] - teacher["gpu_s"] / 3.6 / accepted) < 2e-4
    card = (ds / "README.md").read_text()
    assert "### GPU-hours per 1,000 accepted rows (partly simulated)" in card
    assert f"| teacher | measured | {teacher['gpu_s']:,.1f} |" in card and "| **total** | partly simulated |" in card
