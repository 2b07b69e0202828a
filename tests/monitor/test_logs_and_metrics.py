"""JSON-lines logs, the metrics' names and labels, and where the live server may listen."""

from __future__ import annotations

import json
import socket

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from curation.core.logs import LogFormatError
from curation.core.progress import Progress
from curation.core.records import Outcome, Reject, StageOutput
from curation.monitor.metrics import registry_for
from curation.monitor.server import LiveServer, LiveServerError
from curation.monitor.state import CostModel, LiveState
from curation.pipeline.plan import build_plan
from curation.writer import manifest
from curation.writer.gpu_hours import RoleCost
from tests.helpers import build


def test_jsonl_logs_are_one_object_per_line(tmp_path, capsys):
    out = build(tmp_path, "recipe=initial_thinking", "n=4", "run.log_format=jsonl", "run.progress_interval_s=0")
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    events = [json.loads(line) for line in lines]  # every line, not only some
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["run_started", "plan"] and kinds[-1] == "run_finished" and "progress" in kinds
    assert all(e["ts"].endswith("+00:00") for e in events)
    last = [e for e in events if e["event"] == "progress"][-1]
    assert last["stages"]["initial_thinking"]["done"] == 4
    done = events[-1]
    accepted = manifest.read(out)["modes"]["initial_thinking_generation_learning"]["accepted"]
    assert done["modes"]["initial_thinking_generation_learning"]["accepted"] == accepted


def test_an_unknown_log_format_is_a_configuration_error(tmp_path):
    with pytest.raises(LogFormatError, match="run.log_format"):
        build(tmp_path, "recipe=initial_thinking", "n=2", "run.log_format=xml")


def _state() -> LiveState:
    plan = build_plan({"improving_full_learning": 4, "initial_thinking_generation_learning": 4},
                      source_provides_images=False, improving_initial_thinking="teacher")
    progress = Progress(["gates", *(s.name for s in plan.stages)], interval=1e9)
    cost = CostModel(roles=(RoleCost("teacher", "server", 2),), server_share=1.0, simulated_gpu_s_per_call={},
                     requested_rows=8)
    accounting = {"teacher": {"calls": 3, "prompt_tokens": 30, "completion_tokens": 12, "wall_s": 2.0,
                              "http_requests": 3, "http_retries": 1, "http_failed": 1, "http_refused": 0}}
    return LiveState(plan=plan, progress=progress, summaries=lambda: accounting, cost=cost)


def test_metrics_follow_prometheus_conventions():
    state = _state()
    state.progress.update("initial_thinking", computed=2, rejected=1)
    state.on_result("initial_thinking", 0.3, StageOutput({}))
    state.on_outcome(Outcome("a", "s", 0, rejects={"initial_thinking": Reject("initial_thinking", "too_short")}))
    state.on_outcome(Outcome("b", "s", 1, rejects={"improving_thinking": Reject("improving_thinking", "timeout",
                                                                               transient=True)}))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry_for(state, "r")).decode())}
    assert all(name.startswith("irgl_") for name in families)
    for f in families.values():
        if f.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in f.samples), f.name
        if "seconds" in f.name or "latency" in f.name:
            assert "_ms" not in f.name and "hours" not in f.name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("irgl_stage_samples_total", (("outcome", "rejected"), ("stage", "initial_thinking")))] == 1
    assert samples[("irgl_rejects_total", (("class", "transient"), ("reason", "timeout"),
                                           ("stage", "improving_thinking")))] == 1
    assert samples[("irgl_backend_failures_total", (("class", "transient"), ("role", "teacher")))] == 1
    assert samples[("irgl_backend_tokens_total", (("kind", "completion"), ("role", "teacher")))] == 12
    assert samples[("irgl_stage_latency_seconds_count", (("stage", "initial_thinking"),))] == 1
    assert samples[("irgl_stage_latency_seconds_bucket", (("le", "0.25"), ("stage", "initial_thinking")))] == 0
    assert samples[("irgl_stage_latency_seconds_bucket", (("le", "0.5"), ("stage", "initial_thinking")))] == 1
    assert samples[("irgl_gpu_seconds", (("basis", "measured"), ("role", "teacher")))] == 4.0
    assert samples[("irgl_mode_accepted_samples", (("mode", "initial_thinking_generation_learning"),))] == 1
    assert samples[("irgl_run_finished", ())] == 0
    # Two runs in one process: each its own registry, no collision.
    registry_for(_state(), "r")


def test_final_counts_replace_the_provisional_ones():
    state = _state()
    state.on_outcome(Outcome("a", "s", 0))
    assert state.mode_counts() == ({"improving_full_learning": (1, 0), "initial_thinking_generation_learning": (1, 0)},
                                   False)
    state.finish({"modes": {"improving_full_learning": {"accepted": 0, "rejected": 1,
                                                        "rejects_by_reason": {"dedup/duplicate": 1}},
                            "initial_thinking_generation_learning": {"accepted": 1, "rejected": 0,
                                                                     "rejects_by_reason": {}}},
                  "run": {"gpu_hours": None}})
    counts, final = state.mode_counts()
    assert final and counts["improving_full_learning"] == (0, 1)
    assert state.snapshot()["modes"]["improving_full_learning"]["top_reasons"] == [("dedup/duplicate", 1)]


def test_a_busy_port_is_one_sentence_and_another_host_is_allowed(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LiveServer(_state(), registry_for(_state(), "r"), lambda sha, fmt: b"", port=port)
        with pytest.raises(LiveServerError, match=f"127.0.0.1:{port}"):
            server.start()
    wide = LiveServer(_state(), registry_for(_state(), "r"), lambda sha, fmt: b"", host="0.0.0.0")
    wide.start()
    try:
        assert not wide.local_only and wide.port > 0
    finally:
        wide.stop()


def test_another_host_is_warned_about(tmp_path, capsys):
    build(tmp_path, "recipe=initial_thinking", "n=2", "run.live_host=0.0.0.0", "run.live=true", "run.live_linger_s=0")
    err = capsys.readouterr().err
    assert "warning: the live page listens on 0.0.0.0" in err and "live page: http://0.0.0.0:" in err
