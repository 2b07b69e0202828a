"""Progress while a run works: per stage done/total, rate, ETA and failures.

On a terminal it redraws one block (a line per stage) in place. In a log (CI, Slurm, a file) it
prints one compact line every `interval` seconds, so a long job shows it is alive without
flooding the log:

    [  125s] gates 4000/16000 32.0/s ETA 375s | initial_thinking 3900/16000 31.2/s ETA 388s fail 3 | …

A stage whose total is unknown (a shard sees an unknown share of the source) shows its count
and rate only.

With `fmt="jsonl"` (`run.log_format=jsonl`) every print is one JSON object on one line instead
(`curation/core/logs.py`), for a log shipper; `snapshot()` gives the same figures to the live page.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

from curation.core import logs


@dataclass
class StageCounter:
    total: int | None = None
    computed: int = 0  # backend calls made
    cached: int = 0  # results read from the store
    rejected: int = 0
    skipped: int = 0  # not run because an earlier stage rejected the sample
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.computed + self.cached + self.skipped

    def rate(self, now: float) -> float:
        """Results per second, results read from the store included (a resumed run's true pace)."""
        return (self.computed + self.cached) / max(now - self.started, 1e-9)

    def eta(self, now: float) -> float | None:
        rate = self.rate(now)
        if self.total is None or rate <= 0 or self.done >= self.total:
            return None
        return (self.total - self.done) / rate


class Progress:
    def __init__(self, stage_names: list[str], interval: float = 5.0, stream=None, fmt: str = "text"):
        self.stages = {name: StageCounter() for name in stage_names}
        self.interval = interval
        self.stream = stream or sys.stderr
        self.fmt = logs.check_format(fmt)
        self._started = time.monotonic()
        self._last = 0.0
        self._tty = fmt == "text" and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._drawn_lines = 0
        # The gates count from the thread that reads the source, the stages from the event loop.
        self._lock = threading.Lock()

    def set_total(self, stage: str, total: int | None) -> None:
        self.stages[stage].total = total
        self.stages[stage].started = time.monotonic()

    def update(self, stage: str, *, computed: int = 0, cached: int = 0, rejected: int = 0, skipped: int = 0) -> None:
        with self._lock:
            counter = self.stages[stage]
            counter.computed += computed
            counter.cached += cached
            counter.rejected += rejected
            counter.skipped += skipped
        self.maybe_print()

    def line(self, name: str, now: float | None = None) -> str:
        """The terminal form: one aligned line for one stage."""
        now = time.monotonic() if now is None else now
        c = self.stages[name]
        eta = c.eta(now)
        total = "?" if c.total is None else str(c.total)
        return (f"{name:>20} {c.done:>7}/{total:<7} {c.rate(now):7.2f}/s  ETA {'     -' if eta is None else f'{eta:6.0f}s'}"
                f"  cached {c.cached}  failed {c.rejected}")

    def compact(self, now: float | None = None) -> str:
        """The log form: every stage on one line."""
        now = time.monotonic() if now is None else now
        parts = []
        for name, c in self.stages.items():
            text = f"{name} {c.done}" + ("" if c.total is None else f"/{c.total}") + f" {c.rate(now):.1f}/s"
            eta = c.eta(now)
            if eta is not None:
                text += f" ETA {eta:.0f}s"
            if c.rejected:
                text += f" fail {c.rejected}"
            parts.append(text)
        return f"[{now - self._started:6.0f}s] " + " | ".join(parts)

    def snapshot(self, now: float | None = None) -> dict[str, dict]:
        """Every stage's figures at one instant (read under the lock: the counters move on other threads)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            out = {}
            for name, c in self.stages.items():
                eta = c.eta(now)
                out[name] = {"done": c.done, "total": c.total, "computed": c.computed, "cached": c.cached,
                             "rejected": c.rejected, "skipped": c.skipped, "rate_per_s": round(c.rate(now), 3),
                             "eta_s": None if eta is None else round(eta, 1)}
            return out

    def elapsed(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self._started

    def maybe_print(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < self.interval:
                return
            self._last = now
            if self.fmt == "jsonl":
                stages = {name: {"done": c.done, "total": c.total, "rate_per_s": round(c.rate(now), 3),
                                 "eta_s": None if (eta := c.eta(now)) is None else round(eta, 1),
                                 "cached": c.cached, "rejected": c.rejected} for name, c in self.stages.items()}
                self.stream.write(logs.line("progress", elapsed_s=round(now - self._started, 3), stages=stages))
            elif self._tty:
                lines = [self.line(name, now) for name in self.stages]
                if self._drawn_lines:
                    self.stream.write(f"\x1b[{self._drawn_lines}F")
                self.stream.write("\n".join(lines) + "\n")
                self._drawn_lines = len(lines)
            else:
                self.stream.write(self.compact(now) + "\n")
            self.stream.flush()
