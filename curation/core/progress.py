"""Progress while a run works: per stage done/total, rate, ETA and failures.

On a terminal it redraws one block in place; in a log (CI, Slurm) it prints a line every
`interval` seconds, so a long job shows it is alive without flooding the log.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


@dataclass
class StageCounter:
    total: int = 0
    computed: int = 0  # backend calls made
    cached: int = 0  # results read from the store
    rejected: int = 0
    skipped: int = 0  # not run because an earlier stage rejected the sample
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.computed + self.cached + self.skipped


class Progress:
    def __init__(self, stage_names: list[str], interval: float = 5.0, stream=None):
        self.stages = {name: StageCounter() for name in stage_names}
        self.interval = interval
        self.stream = stream or sys.stderr
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._drawn_lines = 0

    def set_total(self, stage: str, total: int) -> None:
        self.stages[stage].total = total
        self.stages[stage].started = time.monotonic()

    def update(self, stage: str, *, computed: int = 0, cached: int = 0, rejected: int = 0, skipped: int = 0) -> None:
        counter = self.stages[stage]
        counter.computed += computed
        counter.cached += cached
        counter.rejected += rejected
        counter.skipped += skipped
        self.maybe_print()

    def line(self, name: str) -> str:
        c = self.stages[name]
        elapsed = max(time.monotonic() - c.started, 1e-9)
        rate = c.computed / elapsed
        remaining = c.total - c.done
        eta = f"{remaining / rate:6.0f}s" if rate > 0 and remaining > 0 else "     -"
        return (f"{name:>20} {c.done:>7}/{c.total:<7} {rate:7.2f}/s  ETA {eta}  "
                f"cached {c.cached}  failed {c.rejected}")

    def maybe_print(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        lines = [self.line(name) for name in self.stages]
        if self._tty and self._drawn_lines:
            self.stream.write(f"\x1b[{self._drawn_lines}F")
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn_lines = len(lines)
