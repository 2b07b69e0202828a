"""`teacher=vllm_server` against vLLM's own OpenAI server (CPU build) serving a tiny Qwen2.5-VL whose
checkpoint carries Qwen2.5-VL's sampling defaults (top_k 1). Whole files are compared: shards and
rejects, lineage included."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.real_engine.conftest import MAX_MODEL_LEN
from tests.real_engine.helpers import (MODES, SMALL, OnRequest, assert_teacher_costed, command, kill_group, published, run, server_teacher,
                                       source_with_a_long_prompt, start, tail)
from tests.support.fault_proxy import FaultProxy, Reset
from tests.support.tiny_qwen import IMPROVING_ANSWER, INITIAL_ANSWERS
from tests.support.vllm_server import VllmServer
from tests.teacher.helpers import assert_each_sample_once, rejects, rows, shard_bytes

PY = sys.executable  # the project's own venv: the server path needs no vLLM on the client side


@pytest.fixture(scope="module")
def clean(vllm_server, thinking_model, tmp_path_factory) -> Path:
    """One uninterrupted run of every mode: the bytes every other run of these tests must match."""
    tmp = tmp_path_factory.mktemp("clean")
    done = run(command(PY, tmp, *SMALL, *server_teacher(vllm_server.url, thinking_model)), tmp / "run.log")
    assert done.returncode == 0, tail(tmp / "run.log")
    return tmp / "ds"


def test_every_mode_gets_accepted_rows_and_seeds_change_the_answers(clean, thinking_model):
    initial = []
    for mode in MODES:
        assert_each_sample_once(clean, mode, 8)
        accepted = rows(clean, mode)
        assert accepted and not [r for r in rejects(clean, mode) if r["stage"].endswith("thinking")], mode
        for row in accepted:
            if "improving_thinking" in row:
                assert row["improving_thinking"] == IMPROVING_ANSWER
            if "initial_thinking" in row:
                assert row["initial_thinking"] in INITIAL_ANSWERS
                initial.append(row["initial_thinking"])
    # The model writes each of four initial thinkings a quarter of the time; its checkpoint says top_k 1.
    # More than one appears only if each request's seed (one per sample) drives a sampled answer — a
    # client that leaves top_k to the checkpoint gets the same answer for every sample.
    assert len(set(initial)) > 1, initial


def test_the_card_costs_the_real_teacher_as_measured(clean):
    assert_teacher_costed(clean, "server")


def test_a_second_run_with_the_same_seed_writes_the_same_bytes(clean, vllm_server, thinking_model, tmp_path):
    done = run(command(PY, tmp_path, *SMALL, *server_teacher(vllm_server.url, thinking_model)), tmp_path / "run.log")
    assert done.returncode == 0, tail(tmp_path / "run.log")
    assert shard_bytes(tmp_path / "ds") == shard_bytes(clean)


def test_a_run_killed_with_kill_9_and_resumed_writes_the_same_bytes(clean, vllm_server, thinking_model, tmp_path):
    log = tmp_path / "run.log"
    procs = []
    # The run is killed when its 6th chat request reaches the server: mid-run, whatever the speed.
    hook = OnRequest(6, lambda: kill_group(procs[0]))
    with FaultProxy(vllm_server.url, hook) as proxy:
        cmd = command(PY, tmp_path, *SMALL, *server_teacher(proxy.url, thinking_model))
        procs.append(start(cmd, log))
        procs[0].wait(timeout=900)
        assert hook.fired.is_set() and procs[0].returncode == -9, tail(log)
        assert not published(tmp_path / "ds")
        done = run(cmd, log)  # the same command
    assert done.returncode == 0, tail(log)
    assert shard_bytes(tmp_path / "ds") == shard_bytes(clean)


def test_a_server_killed_mid_run_stops_the_run_and_a_restarted_one_finishes_it(clean, vllm_python, thinking_model,
                                                                                tmp_path):
    log = tmp_path / "run.log"
    with VllmServer(vllm_python, thinking_model, max_model_len=MAX_MODEL_LEN, log=tmp_path / "server.log") as server:
        # kill -9 of the server when the 6th chat request arrives; from then on every connection
        # (chat and GET /models alike) is dropped, as a dead server's would be.
        hook = OnRequest(6, server.kill, after=Reset())
        with FaultProxy(server.url, hook) as proxy:
            cmd = command(PY, tmp_path, *SMALL, *server_teacher(proxy.url, thinking_model))
            stopped = run(cmd, log, timeout_s=600)  # bounded: a hang fails here
            assert hook.fired.is_set(), tail(log)
            assert stopped.returncode != 0, tail(log)
            assert not published(tmp_path / "ds"), "a run whose server died wrote a dataset"

            server.start()  # the same server, the same port
            hook.reset()
            done = run(cmd, log)  # the same command
        assert server.starts == 2
    assert done.returncode == 0, tail(log)
    assert shard_bytes(tmp_path / "ds") == shard_bytes(clean)


def test_an_over_long_sample_is_a_request_too_long_reject_and_the_run_finishes(vllm_server, thinking_model, tmp_path):
    from transformers import AutoTokenizer

    prompts, long_prompt = source_with_a_long_prompt(tmp_path / "source", normal=5)
    assert len(AutoTokenizer.from_pretrained(thinking_model)(long_prompt).input_ids) > MAX_MODEL_LEN  # the premise
    overrides = [o for o in SMALL if not o.startswith("n=")]
    cmd = command(PY, tmp_path, *overrides, "n=6", "source=folder", f"source.path={tmp_path / 'source'}",
                  "source.index=index.jsonl", "gates.min_side=32", *server_teacher(vllm_server.url, thinking_model))
    done = run(cmd, tmp_path / "run.log")
    assert done.returncode == 0, tail(tmp_path / "run.log")
    out = tmp_path / "ds"
    for mode in MODES:
        assert_each_sample_once(out, mode, 6)
        assert long_prompt not in {row["prompt"] for row in rows(out, mode)}
    for mode in MODES[:3]:  # the initial thinking is the first model call that meets the long prompt
        assert sorted(row["prompt"] for row in rows(out, mode)) == sorted(prompts)
        (reject,) = rejects(out, mode)
        assert (reject["stage"], reject["reason"]) == ("initial_thinking", "request_too_long")
