"""The live page in headless Chromium while an offline run goes: counts move, images show, nothing errors."""

from __future__ import annotations

import json
import time

import pytest

from curation.writer import manifest
from tests.monitor.live_run import GUARD_S, LiveRun
from tests.publish.chromium import Chromium

# A run slow enough to watch: each sample waits 0.3 s, two at a time (run.throttle_s).
SLOW = ["recipe=all", "n=60", "run.throttle_s=0.3", "run.max_in_flight=2", "run.live_linger_s=0"]

DUMP = """JSON.stringify({
  phase: document.getElementById('phase').textContent,
  walked: Number(document.getElementById('samples-done').textContent),
  stages: Object.fromEntries([...document.querySelectorAll('#stages tbody tr')].map(r => [r.dataset.stage, Number(r.dataset.done)])),
  accepted: Object.fromEntries([...document.querySelectorAll('#modes tbody tr')].map(r => [r.dataset.mode, Number(r.children[2].textContent)])),
  images: [...document.querySelectorAll('#accepted img')].filter(i => i.complete && i.naturalWidth > 0).map(i => [i.alt, i.naturalWidth]),
  gpu: document.getElementById('gpu-note').textContent,
})"""


def _dump_when(page, condition) -> dict:
    """The page's figures once `condition` holds (the page polls every second; the guard only bounds a hang)."""
    deadline = time.monotonic() + GUARD_S
    while True:
        dump = json.loads(page.evaluate(DUMP))
        if condition(dump) or time.monotonic() > deadline:
            return dump
        time.sleep(0.2)


def test_the_live_page_moves_while_the_run_goes(tmp_path, chromium_binary):
    with LiveRun(tmp_path, *SLOW) as run:
        browser = Chromium(chromium_binary, tmp_path / "profile", tmp_path / "chromium.log")
        try:
            page = browser.open(run.url)
            first = _dump_when(page, lambda d: {"hq_image", "initial_image"} <= {alt for alt, _ in d["images"]})
            shot1 = page.screenshot()
            second = _dump_when(page, lambda d: d["walked"] > first["walked"])
            shot2 = page.screenshot()
            still_running = run.proc.poll() is None
            errors = page.errors()
        finally:
            browser.close()
        assert run.finish() == 0
    assert still_running, "the run ended before the second look: it must be watched while it goes"
    assert first["phase"] == second["phase"] == "walking"
    assert second["walked"] > first["walked"] > 0
    assert sum(second["stages"].values()) > sum(first["stages"].values())
    assert shot1 != shot2
    # A trajectory's images came from the store and decoded at the run's size.
    assert {"hq_image", "initial_image"} <= {alt for alt, _ in first["images"]}
    assert all(width == 128 for _, width in first["images"])
    assert "simulated" in first["gpu"]
    assert errors == []
    # Provisional counts never exceed what the run finally accepted.
    final = manifest.read(tmp_path / "ds")["modes"]
    assert all(second["accepted"][m] <= final[m]["accepted"] for m in final)


def test_the_page_serves_only_its_own_files_and_the_stores_images(tmp_path):
    import urllib.error

    with LiveRun(tmp_path, "recipe=initial_thinking", "n=12", "run.throttle_s=0.2", "run.max_in_flight=1",
                 "run.live_linger_s=0") as run:
        state = None
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline:
            state = run.state()
            if state["accepted_recent"]:
                break
            time.sleep(0.2)
        name = state["accepted_recent"][0]["images"]["hq_image"]
        assert run.get(f"images/{name}")[:8] == b"\x89PNG\r\n\x1a\n"
        for bad in ("images/..%2Fstore.sqlite", "images/" + "0" * 64 + ".png", "images/x.png"):
            with pytest.raises(urllib.error.HTTPError) as err:
                run.get(bad)
            assert err.value.code == 404
        html = run.get("").decode()
        assert "http" not in html.replace('href="metrics"', "")  # nothing loaded from elsewhere (no CDN)
        assert run.finish() == 0
