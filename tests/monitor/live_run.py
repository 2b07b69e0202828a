"""A run of `curation.run` in a subprocess with its live page on, its events read as JSON lines.

The run logs with `run.log_format=jsonl`, so the test finds the page's address in the
`live_page` event, and reads progress and the finish from the same lines (which also checks
that every line of stderr is one JSON object). Guards only bound a hung run; no assertion depends
on how fast anything is.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

GUARD_S = 120
ROOT = Path(__file__).resolve().parents[2]


class LiveRun:
    def __init__(self, tmp: Path, *overrides: str, env: dict[str, str] | None = None):
        self.lines: list[str] = []
        self.events: "queue.Queue[dict]" = queue.Queue()
        self.seen: list[dict] = []
        cmd = [sys.executable, "-m", "curation.run", f"out={tmp / 'ds'}", f"cache={tmp / 'cache'}", "image_size=128",
               "run.log_format=jsonl", "run.live_port=0", "run.progress_interval_s=1", *overrides]
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": path, **(env or {})})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self.wait_for("live_page")["url"]

    def _read(self) -> None:
        for raw in self.proc.stderr:
            self.lines.append(raw)
            try:
                self.events.put(json.loads(raw))
            except ValueError:
                self.events.put({"event": "not_json", "line": raw})
        self.events.put({"event": "exited"})

    def wait_for(self, event: str) -> dict:
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline:
            try:
                item = self.events.get(timeout=1)
            except queue.Empty:
                continue
            self.seen.append(item)
            if item["event"] == event:
                return item
            if item["event"] == "exited":
                raise AssertionError(f"the run exited before {event!r}:\n{''.join(self.lines)[-3000:]}")
        raise AssertionError(f"no {event!r} event within {GUARD_S} s:\n{''.join(self.lines)[-3000:]}")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return response.read()

    def state(self) -> dict:
        return json.loads(self.get("api/state"))

    def finish(self, guard_s: float = GUARD_S) -> int:
        try:
            rc = self.proc.wait(timeout=guard_s)
        finally:
            self.close()
        self._reader.join(timeout=10)
        while True:  # the events left after the last wait_for
            try:
                self.seen.append(self.events.get_nowait())
            except queue.Empty:
                break
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "LiveRun":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
