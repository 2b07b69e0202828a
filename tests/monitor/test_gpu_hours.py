"""GPU-hours per 1,000 accepted rows: the rules, the offline world's simulated table, a server teacher's measured one."""

from __future__ import annotations

import json
import time

import pytest

from curation.writer import gpu_hours, manifest
from curation.writer.gpu_hours import RoleCost
from tests.helpers import build
from tests.monitor.live_run import GUARD_S, LiveRun
from tests.support.aio_server import ServerThread
from tests.support.fake_openai import FakeOpenAI
from tests.teacher.helpers import server_teacher

KEY_ENV = "IRGL_TEST_TEACHER_KEY"
KEY = "sk-" + "live-page-test-key"  # built at run time, so secret scanners leave it alone
SETTINGS = dict(server_share=0.5, simulated_gpu_s_per_call={"teacher": 1.0, "generator": 40.0})


def test_each_kind_of_backend_is_costed_by_its_own_rule():
    roles = [RoleCost("teacher", "server", 4), RoleCost("generator", "in_process", None),
             RoleCost("reference", "offline", None)]
    g = gpu_hours.measure(roles, accounting={"teacher": {"wall_s": 100.0}}, calls={"reference": 10, "teacher": 99},
                          elapsed_s=300.0, walk_s=250.0, accepted=500, requested=2000,
                          **{**SETTINGS, "simulated_gpu_s_per_call": {"reference": 40.0}})
    r = g["roles"]
    assert r["teacher"]["gpu_s"] == 100.0 * 4 * 0.5 and r["teacher"]["basis"] == "measured"
    assert "4 GPUs serving" in r["teacher"]["assumption"]
    assert r["generator"]["gpu_s"] == 300.0 and "assumed: set cost.gpus.generator" in r["generator"]["assumption"]
    assert r["reference"]["gpu_s"] == 400.0 and r["reference"]["basis"] == "simulated" and g["simulated"]
    total = 200.0 + 300.0 + 400.0
    assert g["total"]["gpu_s"] == total
    assert g["total"]["per_1k_accepted"] == round(total / 3600 * 1000 / 500, 4)
    assert g["total"]["projected_gpu_hours"] == round(g["total"]["per_1k_accepted"] * 2, 3)
    # A server backend without its own clock was in use for the walk.
    alone = gpu_hours.measure([RoleCost("generator", "server", 2)], accounting={}, calls={}, elapsed_s=300.0,
                              walk_s=250.0, accepted=0, requested=None, **SETTINGS)
    assert alone["roles"]["generator"]["gpu_s"] == 250.0 and alone["total"]["per_1k_accepted"] is None


def test_parts_of_a_sharded_run_add_up():
    a = gpu_hours.measure([RoleCost("teacher", "offline", None)], accounting={}, calls={"teacher": 30}, elapsed_s=1,
                          walk_s=1, accepted=10, requested=100, **SETTINGS)
    b = gpu_hours.measure([RoleCost("teacher", "offline", None)], accounting={}, calls={"teacher": 10}, elapsed_s=1,
                          walk_s=1, accepted=5, requested=100, **SETTINGS)
    merged = gpu_hours.merge([a, b], accepted=15)
    assert merged["roles"]["teacher"]["gpu_s"] == 40.0 and merged["simulated"]
    assert merged["total"]["per_1k_accepted"] == round(40 / 3600 * 1000 / 15, 4)
    assert merged["requested_rows"] == 100


def test_the_offline_card_has_a_simulated_table(all_modes_dataset):
    g = manifest.read(all_modes_dataset)["run"]["gpu_hours"]
    assert g["simulated"] and {r["basis"] for r in g["roles"].values()} == {"simulated"}
    accepted = sum(m["accepted"] for m in manifest.read(all_modes_dataset)["modes"].values())
    assert g["accepted_rows"] == accepted and g["requested_rows"] == 6 * 12
    text = (all_modes_dataset / "README.md").read_text()
    assert "### GPU-hours per 1,000 accepted rows (simulated)" in text
    assert f"| **total** | simulated | {g['total']['gpu_s']:,.1f} | **{g['total']['per_1k_accepted']:,.3f}** |" in text
    assert f"Projected to the requested {6 * 12:,} rows" in text


def test_a_server_teacher_is_costed_from_its_time_and_no_secret_shows(tmp_path, monkeypatch):
    """The card's table from a run against an HTTP teacher (the fake OpenAI server of tests/support),
    with the GPUs serving it set; its API key appears on no page, metric or log line."""
    endpoint = FakeOpenAI(latency_s=0.05, api_key=KEY)
    with ServerThread(endpoint.protocol) as server:
        overrides = [*server_teacher(server.url), f"teacher.api_key_env={KEY_ENV}", "cost.gpus.teacher=2",
                     "recipe=improving_full", "n=6"]
        with LiveRun(tmp_path, *overrides, "run.live_linger_s=30", env={KEY_ENV: KEY}) as run:
            seen = []
            deadline = time.monotonic() + GUARD_S
            while run.proc.poll() is None and time.monotonic() < deadline:
                try:
                    # /metrics last: once it has carried the final counts the run stops serving
                    seen += [run.get(""), run.get("api/state"), run.get("metrics")]
                except OSError:  # the run has just stopped serving
                    break
                if b"irgl_run_finished 1.0" in seen[-1]:
                    break
                time.sleep(0.2)
            assert run.finish() == 0
    assert seen and b"irgl_run_finished 1.0" in seen[-1]
    assert all(KEY.encode() not in body for body in seen)
    assert KEY not in "".join(run.lines)
    doc = manifest.read(tmp_path / "ds")
    teacher = doc["run"]["gpu_hours"]["roles"]["teacher"]
    wall = doc["run"]["backends"]["teacher"]["wall_s"]
    assert teacher["basis"] == "measured" and teacher["gpu_s"] == pytest.approx(wall * 2, abs=0.01)
    assert "server:" in teacher["assumption"] and "2 GPUs serving it" in teacher["assumption"]
    assert doc["run"]["gpu_hours"]["total"]["basis"] == "partly simulated"  # the images are the offline world's
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "| teacher | measured |" in card and "| **total** | partly simulated |" in card
    state = json.loads(seen[-2])
    assert state["accounting"]["teacher"]["calls"] == 12 and state["teacher_tokens_per_s"] > 0
    assert state["gpu"]["roles"]["teacher"]["basis"] == "measured"


def test_a_fully_cached_rerun_costs_nothing_and_says_why(tmp_path):
    build(tmp_path, "recipe=initial_thinking", "n=4")
    again = manifest.read(build(tmp_path, "recipe=initial_thinking", "n=4"))["run"]["gpu_hours"]
    assert again["total"]["gpu_s"] == 0.0 and "this run only" in again["total"]["assumption"]
