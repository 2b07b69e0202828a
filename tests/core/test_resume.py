"""Resume: kill -9 at random points, start again, get the same bytes; finished runs call nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import FAST, backend_calls, build, shard_digests

REPO = Path(__file__).resolve().parents[2]


def _command(tmp: Path) -> list[str]:
    return [sys.executable, "-m", "curation.run", "recipe=all", "n=16", *FAST,
            f"out={tmp / 'ds'}", f"cache={tmp / 'cache'}"]


def test_kill_9_then_resume_is_byte_identical(tmp_path):
    reference = build(tmp_path / "ref", "recipe=all", "n=16")
    expected = shard_digests(reference)

    rng = random.Random(1234)
    killed = 0
    for _ in range(4):
        proc = subprocess.Popen(_command(tmp_path / "killed"), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(1.0, 5.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
    assert killed >= 1, "the run finished before any kill; lengthen it"
    subprocess.run(_command(tmp_path / "killed"), cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    assert shard_digests(tmp_path / "killed" / "ds") == expected


def test_second_run_makes_zero_backend_calls(tmp_path):
    out = build(tmp_path, "recipe=improving_full", "n=6")
    first = shard_digests(out)
    assert sum(backend_calls(out).values()) > 0
    build(tmp_path, "recipe=improving_full", "n=6")
    assert backend_calls(out) == {}
    assert shard_digests(out) == first


def test_other_recipe_reuses_shared_results(tmp_path):
    build(tmp_path, "recipe=initial_full", "n=6", out="a")
    out = build(tmp_path, "recipe=improving_full", "n=6", out="b")
    calls = backend_calls(out)
    assert "reference_image" not in calls and "initial_thinking" not in calls
    assert calls["initial_image"] == 6


def test_changing_a_generator_setting_recomputes_only_downstream(tmp_path):
    build(tmp_path, "recipe=improving_full", "n=6")
    out = build(tmp_path, "recipe=improving_full", "n=6", "generator.defect_rate=0.3")
    calls = backend_calls(out)
    assert set(calls) <= {"initial_image", "improving_thinking", "score"}
    assert calls["initial_image"] == 6


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = shard_digests(build(tmp_path, "recipe=improving_full", "n=5", out="a", cache="ca"))
    b = shard_digests(build(tmp_path, "recipe=improving_full", "n=5", out="b", cache="cb"))
    c = shard_digests(build(tmp_path, "recipe=improving_full", "n=5", "seed=1", out="c", cache="cc"))
    assert a == b
    assert a != c
