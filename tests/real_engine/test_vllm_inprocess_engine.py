"""`teacher=vllm` on the real engine: vLLM's AsyncLLM (CPU build) inside the run, the run itself
executed by the real-engine venv's python. Every engine start costs a minute or more here, so one
test holds three runs: uninterrupted, killed with kill -9 mid-run, and resumed."""

from __future__ import annotations

import time

from tests.real_engine.helpers import (MODES, SMALL, assert_teacher_costed, command, inprocess_teacher, kill_group, published, run, start,
                                       stored_thinkings, tail)
from tests.support.tiny_qwen import IMPROVING_ANSWER, INITIAL_ANSWERS
from tests.teacher.helpers import assert_each_sample_once, rejects, rows, shard_bytes


def test_every_mode_accepted_in_process_and_a_killed_run_resumes_to_the_same_bytes(vllm_python, thinking_model,
                                                                                    tmp_path):
    teacher = inprocess_teacher(thinking_model)
    log = tmp_path / "run.log"
    done = run(command(vllm_python, tmp_path / "a", *SMALL, *teacher), log)
    assert done.returncode == 0, tail(log)
    first = tmp_path / "a" / "ds"
    initial = []
    for mode in MODES:
        assert_each_sample_once(first, mode, 8)
        accepted = rows(first, mode)
        assert accepted and not [r for r in rejects(first, mode) if r["stage"].endswith("thinking")], mode
        for row in accepted:
            assert row.get("improving_thinking", IMPROVING_ANSWER) == IMPROVING_ANSWER
            if "initial_thinking" in row:
                initial.append(row["initial_thinking"])
    # Seeded sampling, not the checkpoint's top_k 1: the model writes each of four answers a quarter of the time.
    assert set(initial) <= set(INITIAL_ANSWERS) and len(set(initial)) > 1, initial
    assert_teacher_costed(first, "in-process")

    # The same command again, killed (process group: the engine core too) once the store holds a
    # thinking and before the dataset is written, then run again to the end.
    cmd = command(vllm_python, tmp_path / "b", *SMALL, *teacher)
    proc = start(cmd, log)
    deadline = time.monotonic() + 900
    while stored_thinkings(tmp_path / "b" / "cache") < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed mid-run:\n" + tail(log)
    kill_group(proc)
    assert stored_thinkings(tmp_path / "b" / "cache") >= 1 and not published(tmp_path / "b" / "ds")
    done = run(cmd, log)
    assert done.returncode == 0, tail(log)
    assert shard_bytes(tmp_path / "b" / "ds") == shard_bytes(first)
