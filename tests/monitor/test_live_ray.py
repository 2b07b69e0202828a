"""Under `executor=ray` the driver serves the page: stage counts and accounting as actors report, final modes at emit."""

from __future__ import annotations

import json
import time

import pytest

from curation.writer import manifest
from tests.monitor.live_run import LiveRun

pytest.importorskip("ray")
# Starting a local Ray and its actor takes minutes on a loaded 2-core machine: a longer hang guard.
RAY_GUARD_S = 900


def test_the_ray_driver_serves_the_live_page(tmp_path):
    overrides = ["recipe=all", "n=8", "executor=ray", "executor.actors=1", "executor.batch_size=2",
                 "executor.local.num_cpus=2", f"run.live_linger_s={RAY_GUARD_S}"]
    with LiveRun(tmp_path, *overrides) as run:
        states, final = [], None
        deadline = time.monotonic() + RAY_GUARD_S
        while time.monotonic() < deadline:
            try:
                states.append(run.state())
                metrics = run.get("metrics").decode()  # last: once final, the run stops serving
            except OSError:
                break
            if "irgl_run_finished 1.0" in metrics:
                final = metrics
                break
            time.sleep(0.5)
        assert run.finish(RAY_GUARD_S) == 0
    assert final is not None and all(s["executor"] == "ray" and not s["outcomes_known"] for s in states)
    walked = [s["stages"]["initial_thinking"]["done"] for s in states]
    assert walked == sorted(walked) and walked[-1] == 8
    modes = manifest.read(tmp_path / "ds")["modes"]
    for mode, summary in modes.items():
        assert f'irgl_mode_accepted_samples{{mode="{mode}"}} {float(summary["accepted"])}' in final
    last = states[-1]
    assert last["gpu"]["simulated"] and last["gpu"]["roles"]["teacher"]["gpu_s"] > 0
    json.dumps(last)
