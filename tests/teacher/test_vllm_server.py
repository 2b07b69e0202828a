"""`teacher=vllm_server` through whole runs (`curation.run.main`) against a fake endpoint, with faults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from curation.writer import manifest
from curation.backends.base import BackendUnavailable
from curation.backends.http import ServerGone
from curation.pipeline.stages.base import derive_seed
from tests.helpers import build
from tests.support.aio_server import ServerThread
from tests.support.fake_openai import FakeOpenAI
from tests.support.fault_proxy import (FaultProxy, Hang, MalformedJSON, Reset, Status, bucket, empty_content,
                                       finish_length, per_body)
from tests.teacher.helpers import assert_each_sample_once, rejects, rows, server_teacher

MODE = "improving_full_learning"
RECIPE = ["recipe=improving_full"]


def test_a_clean_run_fills_lineage_and_sends_images_within_budget(tmp_path, fake):
    endpoint, url = fake
    out = build(tmp_path, *RECIPE, "n=6", "image_size=96", *server_teacher(url))
    assert_each_sample_once(out, MODE, 6)
    found = rows(out, MODE)
    assert len(found) == 6
    for row in found:
        stages = row["lineage"]["stages"]
        initial, improving = stages["initial_thinking"], stages["improving_thinking"]
        assert initial["template"] == "teacher_initial_thinking@2"
        assert improving["template"] == "teacher_improving_thinking@2"
        assert "templates" not in initial["backend"]["settings"]  # a prompt is its stage's, not the teacher's
        assert initial["finish_reason"] == improving["finish_reason"] == "stop"
        # Only what determines the text: no wall clock, attempts or tokens (those are the run's accounting).
        assert not {"latency_s", "attempts", "prompt_tokens", "completion_tokens"} & (set(initial) | set(improving))
        # image_size=96 → 84×84 on the 28-pixel grid; the server saw exactly that, for every image.
        assert initial["image_sizes"] == ["84x84"] and improving["image_sizes"] == ["84x84", "84x84"]
        assert row["initial_thinking"].count("of 84x84 pixels") == 1
        assert row["improving_thinking"].count("of 84x84 pixels") == 2
        # The per-sample seed reached the server.
        assert f"seed {derive_seed(0, row['sample_id'], 'initial_thinking')}" in row["initial_thinking"]
    assert endpoint.requests == 12
    run = manifest.read(out)["run"]
    assert run["backend_calls"]["initial_thinking"] == run["backend_calls"]["improving_thinking"] == 6
    accounting = run["backends"]["teacher"]
    assert accounting["calls"] == accounting["http_requests"] == accounting["http_attempts"] == 12
    assert accounting["prompt_tokens"] > 0 and accounting["completion_tokens"] > 0

    build(tmp_path, *RECIPE, "n=6", "image_size=96", *server_teacher(url))  # everything is in the store now
    assert endpoint.requests == 12 and manifest.read(out)["run"]["backend_calls"] == {}


def test_the_pixel_budget_decides_what_the_server_sees(tmp_path, fake):
    _, url = fake
    out = build(tmp_path, "recipe=initial_thinking", "n=2", "image_size=256", *server_teacher(url),
                "teacher.max_pixels=12544", "teacher.min_pixels=784")
    for row in rows(out, "initial_thinking_generation_learning"):
        assert row["lineage"]["stages"]["initial_thinking"]["image_sizes"] == ["112x112"]  # 256² → 16 cells
        assert "of 112x112 pixels" in row["initial_thinking"]


def _transient_plan(call):
    """Every request fails in one of four ways before it passes (or passes at once)."""
    sequences = [[Status(429, retry_after=0.05), Status(500)], [Status(503), Reset()],
                 [MalformedJSON(), Hang(2.0)], []]
    faults = sequences[bucket(call, 4)] if call.path.endswith("/chat/completions") else []
    return faults[call.attempt] if call.attempt < len(faults) else None


def test_transient_faults_leave_the_output_of_a_clean_run(tmp_path, fake):
    _, url = fake
    clean = build(tmp_path, *RECIPE, "n=8", *server_teacher(url), out="clean", cache="clean-cache")
    with FaultProxy(url, _transient_plan) as proxy:
        faulted = build(tmp_path, *RECIPE, "n=8", *server_teacher(proxy.url, timeout_s=1.0), out="faulted",
                        cache="faulted-cache")
    assert {"status_429", "status_500", "status_503", "reset", "malformed_json", "hang"} <= set(proxy.faults())
    assert_each_sample_once(faulted, MODE, 8)
    assert rows(faulted, MODE) == rows(clean, MODE) and len(rows(clean, MODE)) == 8
    assert rejects(faulted, MODE) == rejects(clean, MODE) == []


def test_a_request_that_keeps_failing_is_rejected_transiently_and_retried_by_the_next_run(tmp_path, fake):
    _, url = fake
    clean = build(tmp_path, *RECIPE, "n=8", *server_teacher(url), out="clean", cache="clean-cache")
    always_503 = per_body([Status(503)] * 99, when=lambda call: bucket(call, 3) == 0)
    with FaultProxy(url, always_503) as proxy:
        first = build(tmp_path, *RECIPE, "n=8", *server_teacher(proxy.url, max_attempts=2))
    assert_each_sample_once(first, MODE, 8)
    failed = rejects(first, MODE)
    assert failed and {r["reason"] for r in failed} == {"server_error"}
    assert all("HTTP 503" in r["detail"] and "(2 attempts)" in r["detail"] for r in failed)
    failed_initial = sum(r["stage"] == "initial_thinking" for r in failed)

    second = build(tmp_path, *RECIPE, "n=8", *server_teacher(url))  # same store, server healthy again
    calls = manifest.read(second)["run"]["backend_calls"]
    assert calls.get("initial_thinking", 0) == failed_initial  # only the failures are asked again
    assert "reference_image" not in calls
    # A sample rejected at initial_thinking skipped its later stages; now they run, and only for it.
    assert calls.get("initial_image", 0) == failed_initial
    assert rows(second, MODE) == rows(clean, MODE) and rejects(second, MODE) == []


def _find(exc: BaseException, kind: type) -> BaseException:
    if isinstance(exc, kind):
        return exc
    assert isinstance(exc, BaseExceptionGroup), exc
    return next(_find(e, kind) for e in exc.exceptions if isinstance(e, (kind, BaseExceptionGroup)))


def test_a_server_that_goes_away_stops_the_run_and_the_same_command_resumes_it(tmp_path, fake):
    _, url = fake
    clean = build(tmp_path, *RECIPE, "n=8", *server_teacher(url), out="clean", cache="clean-cache")
    gone = per_body([Reset()] * 99)
    with FaultProxy(url, gone) as proxy:
        # The executor's task group may wrap it in an ExceptionGroup; ServerGone is what stopped the run.
        with pytest.raises((ServerGone, BaseExceptionGroup)) as caught:
            build(tmp_path, *RECIPE, "n=8", *server_teacher(proxy.url, max_attempts=2),
                  "teacher.http.give_up_after=3", "teacher.concurrency=1")
    stopped = _find(caught.value, ServerGone)
    assert "the last 3 requests" in str(stopped) and "resumes" in str(stopped)
    chats = [call for call, _ in proxy.log if call.path.endswith("/chat/completions")]
    assert len(chats) == 3 * 2  # three samples, two attempts each, then it stopped: not all eight
    assert not (tmp_path / "ds" / "manifest.json").exists()

    resumed = build(tmp_path, *RECIPE, "n=8", *server_teacher(url))
    calls = manifest.read(resumed)["run"]["backend_calls"]
    assert calls.get("reference_image", 0) < 8  # those finished before the stop were kept
    assert rows(resumed, MODE) == rows(clean, MODE)


def test_empty_and_truncated_answers_are_rejected_by_name_or_resampled(tmp_path, fake):
    _, url = fake
    clean = {r["sample_id"]: r for r in rows(build(tmp_path, *RECIPE, "n=8", *server_teacher(url), out="clean",
                                                   cache="clean-cache"), MODE)}

    def plan(call):  # content faults on the first answer to a third of the requests each
        if not call.path.endswith("/chat/completions") or call.attempt:
            return None
        return {0: empty_content(), 1: finish_length()}.get(bucket(call, 3))

    once = ["stages.initial_thinking.validation_attempts=1", "stages.improving_thinking.validation_attempts=1"]
    with FaultProxy(url, plan) as proxy:
        out = build(tmp_path, *RECIPE, "n=8", *server_teacher(proxy.url), *once, out="once", cache="once-cache")
    assert_each_sample_once(out, MODE, 8)
    found = rejects(out, MODE)
    assert {r["reason"] for r in found} == {"empty_output", "truncated"}
    assert len(found) == len(proxy.faults())  # each faulted answer cost its sample, and nothing else did
    for row in rows(out, MODE):  # samples never faulted have the clean run's columns (keys differ: settings do)
        assert {k: v for k, v in row.items() if k != "lineage"} == \
               {k: v for k, v in clean[row["sample_id"]].items() if k != "lineage"}

    with FaultProxy(url, plan) as proxy:
        out = build(tmp_path, *RECIPE, "n=8", *server_teacher(proxy.url), out="resampled", cache="resampled-cache")
    assert_each_sample_once(out, MODE, 8)
    resampled = [row for row in rows(out, MODE)
                 if max(row["lineage"]["stages"][s]["validation_attempts"]
                        for s in ("initial_thinking", "improving_thinking")) > 1]
    assert resampled and len(rows(out, MODE)) + len(rejects(out, MODE)) == 8
    for row in resampled:
        for stage in ("initial_thinking", "improving_thinking"):
            lineage = row["lineage"]["stages"][stage]
            base = derive_seed(0, row["sample_id"], stage)
            assert lineage["seed"] == base + lineage["validation_attempts"] - 1  # a new seed per attempt
            assert f"seed {lineage['seed']}" in row[stage]


@pytest.mark.parametrize("case", ["no_server", "wrong_model", "not_the_api_root", "key_variable_unset", "wrong_key"])
def test_start_up_check_says_what_is_wrong_before_any_work(tmp_path, monkeypatch, case):
    endpoint = FakeOpenAI(api_key="right-key")
    monkeypatch.setenv("IRGL_TEST_KEY", "right-key")
    monkeypatch.delenv("IRGL_UNSET_KEY", raising=False)
    with ServerThread(endpoint.protocol) as server:
        teacher = server_teacher(server.url) + ["teacher.api_key_env=IRGL_TEST_KEY"]
        overrides, expected = {
            "no_server": (["teacher.base_url=http://127.0.0.1:1/v1"], "no server answers at http://127.0.0.1:1/v1"),
            "wrong_model": (["teacher.model=Qwen/Qwen2.5-VL-72B-Instruct"], "serves ['fake/qwen2.5-vl'], not"),
            "not_the_api_root": ([f"teacher.base_url={server.url}"], "usually ending in /v1"),
            "key_variable_unset": (["teacher.api_key_env=IRGL_UNSET_KEY"], "IRGL_UNSET_KEY"),
            "wrong_key": (["teacher.api_key_env=HOME"], "refused the request (HTTP 401)"),
        }[case]
        with pytest.raises(BackendUnavailable) as caught:
            build(tmp_path, *RECIPE, "n=2", *teacher, *overrides)
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert "right-key" not in message
    assert not (tmp_path / "cache").exists() and not (tmp_path / "ds").exists()  # nothing started
    assert endpoint.requests == 0


def test_the_command_line_prints_one_sentence_and_exits_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "curation.run", "recipe=improving_full", "n=2",
                             "teacher=vllm_server", "teacher.base_url=http://127.0.0.1:1/v1",
                             f"out={tmp_path / 'ds'}", f"cache={tmp_path / 'cache'}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no server answers at http://127.0.0.1:1/v1" in errors[0]
    assert "Traceback" not in result.stderr


def test_the_manifest_names_the_key_variable_but_never_the_key(tmp_path, monkeypatch):
    secret = "sk-manifest-never"
    endpoint = FakeOpenAI(api_key=secret)
    monkeypatch.setenv("IRGL_TEST_KEY", secret)
    with ServerThread(endpoint.protocol) as server:
        out = build(tmp_path, "recipe=initial_thinking", "n=2", *server_teacher(server.url),
                    "teacher.api_key_env=IRGL_TEST_KEY")
    assert endpoint.requests == 2
    doc = manifest.read(out)
    assert doc["config"]["teacher"]["api_key_env"] == "IRGL_TEST_KEY"
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in json.dumps(doc)
