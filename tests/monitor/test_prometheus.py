"""A real Prometheus (Debian's `prometheus`) scrapes a run's /metrics: its accepted counts are the manifest's."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from curation.writer import manifest
from tests.monitor.live_run import GUARD_S, LiveRun


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but prometheus is not installed: .ci/run must `apt-get install -y prometheus`")
        pytest.skip("prometheus is not installed (Debian: apt-get install -y prometheus); CI installs it")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def _wait(check, what: str):
    deadline = time.monotonic() + GUARD_S
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:  # not listening yet
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {GUARD_S} s")


def test_prometheus_scrapes_the_accepted_counts_of_the_manifest(tmp_path, prometheus_binary):
    # The run keeps serving after emit until a scrape has carried its final counts (run.live_linger_s
    # bounds the wait), so a 1 s scrape interval always catches them.
    with LiveRun(tmp_path, "recipe=all", "n=16", "run.throttle_s=0.05", f"run.live_linger_s={GUARD_S}") as run:
        target = urllib.parse.urlsplit(run.url).netloc
        port = _free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                          f"scrape_configs:\n  - job_name: irgl\n    static_configs:\n      - targets: ['{target}']\n")
        log = open(tmp_path / "prometheus.log", "wb")
        prom = subprocess.Popen([prometheus_binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: urllib.request.urlopen(f"{base}/-/ready", timeout=5).status == 200, "ready Prometheus")
            closed = run.wait_for("live_page_closed")
            assert closed["final_scraped"] is True
            # and what serving cost: Prometheus scraped at least once, on the server's own thread
            assert closed["requests"] >= 1 and closed["server_cpu_s"] > 0
            assert run.finish() == 0
            # The last scrape of the run (its target is gone now) holds the final counts: range
            # selectors read past the staleness marker Prometheus wrote when the target went away.
            finished = _wait(lambda: _query(base, "last_over_time(irgl_run_finished[10m])"), "irgl_run_finished")
            assert float(finished[0]["value"][1]) == 1
            found = _query(base, "last_over_time(irgl_mode_accepted_samples[10m])")
            rejected = _query(base, "last_over_time(irgl_mode_rejected_samples[10m])")
        finally:
            prom.terminate()
            prom.wait(timeout=30)
            log.close()
    modes = manifest.read(tmp_path / "ds")["modes"]
    assert {r["metric"]["mode"]: int(float(r["value"][1])) for r in found} == {m: s["accepted"] for m, s in modes.items()}
    assert {r["metric"]["mode"]: int(float(r["value"][1])) for r in rejected} == {m: s["rejected"] for m, s in modes.items()}
    assert sum(s["accepted"] for s in modes.values()) > 0
