"""What the live page and /metrics show, gathered from what the run already keeps.

- Per stage done/total, rate, ETA: the run's `Progress` counters (`snapshot()`).
- Per mode accepted and rejected, top reject reasons, failures by class, the latest accepted and
  rejected samples: each outcome as the walker writes it to the store (`on_outcome`, folded at
  once into a few counters and two short deques: constant memory whatever n).
  **Provisional**: emit still drops duplicates and rows that fail the schema check, so a mode's
  acceptance is final only after emit; `finish()` then replaces them with the manifest's counts.
- Latency per stage: the walker's timing of each backend call (`on_result`).
- Teacher tokens/s and the other accounting: the backends' own `summary()`.
- GPU-seconds so far and projected: `writer/gpu_hours.py` over the same figures.

`on_outcome`/`on_result` run on the executor's event loop and return at once (a few dict
updates under an uncontended lock). Everything else runs on the live server's thread when a
page polls or Prometheus scrapes, so a run nobody watches pays only the folding.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from curation.core.images import ImageRef
from curation.core.progress import Progress
from curation.core.records import Outcome, Reject
from curation.pipeline.plan import Plan
from curation.writer import gpu_hours
from curation.writer.gpu_hours import RoleCost

TEXT_CHARS = 700  # per text field of a trajectory on the page: enough to judge it, small to poll
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class CostModel:
    """What `gpu_hours.measure` needs besides the live counts (from `cfg.cost` and the plan)."""

    roles: tuple[RoleCost, ...]
    server_share: float
    simulated_gpu_s_per_call: Mapping[str, float]
    requested_rows: int


@dataclass
class ModeTally:
    accepted: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)  # "stage/reason" of the first reject


class LiveState:
    def __init__(self, *, plan: Plan, progress: Progress, summaries: Callable[[], dict[str, dict]],
                 cost: CostModel, recent: int = 8, executor: str = "local"):
        self.plan = plan
        self.progress = progress
        self.summaries = summaries  # role -> backend summary() so far
        self.cost = cost
        self.executor = executor
        self.role_of = {s.name: s.role for s in plan.stages if s.role}
        self.in_flight: Callable[[], dict[str, int]] = dict  # set by the entrypoint (the walker's counts)
        self.phase = "walking"
        self.started = time.monotonic()
        self.walk_ended: float | None = None
        self._lock = threading.Lock()
        self.outcomes = 0
        self.modes = {m: ModeTally() for m in plan.modes}
        self.failures: Counter = Counter()  # (stage, reason, "transient" | "sample") -> rejects
        self.latency: dict[str, list[int]] = {}  # stage -> cumulative bucket counts (+Inf last)
        self.latency_sum: dict[str, float] = {}
        self.accepted_recent: deque = deque(maxlen=recent)
        self.rejected_recent: deque = deque(maxlen=recent)
        self.final: dict[str, Any] | None = None  # the manifest's figures once emit is done
        self.outcomes_known = executor == "local"  # under Ray the driver sees counts, not outcomes

    # ------------------------------------------------------------------ fed by the walker (event loop)

    def on_result(self, stage: str, seconds: float, result: Any) -> None:
        with self._lock:
            buckets = self.latency.get(stage)
            if buckets is None:
                buckets = self.latency[stage] = [0] * (len(LATENCY_BUCKETS) + 1)
                self.latency_sum[stage] = 0.0
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            buckets[-1] += 1
            self.latency_sum[stage] += seconds

    def on_outcome(self, outcome: Outcome) -> None:
        modes = self.plan.modes_for(outcome.index)
        with self._lock:
            self.outcomes += 1
            for stage, reject in outcome.rejects.items():
                self.failures[(stage, reject.reason, "transient" if reject.transient else "sample")] += 1
            accepted_in = []
            first_reason = None
            for mode in modes:
                tally = self.modes[mode]
                reject = outcome.first_reject(self.plan.mode_stages[mode])
                if reject is None:
                    tally.accepted += 1
                    accepted_in.append(mode)
                else:
                    tally.rejected += 1
                    tally.reasons[f"{reject.stage}/{reject.reason}"] += 1
                    first_reason = first_reason or reject
            if accepted_in:
                self.accepted_recent.appendleft((outcome, accepted_in))
            elif first_reason is not None:
                self.rejected_recent.appendleft((outcome, first_reason))

    # ------------------------------------------------------------------ set by the entrypoint

    def set_phase(self, phase: str) -> None:
        if phase != "walking" and self.walk_ended is None:
            self.walk_ended = time.monotonic()
        self.phase = phase

    def finish(self, manifest_json: dict) -> None:
        """The run's final figures, after emit: accepted per mode (deduplicated, schema-checked) and GPU-hours."""
        with self._lock:
            self.final = {"modes": {m: {"accepted": s["accepted"], "rejected": s["rejected"],
                                        "rejects_by_reason": s["rejects_by_reason"]}
                                    for m, s in manifest_json["modes"].items()},
                          "gpu_hours": manifest_json["run"].get("gpu_hours")}
            self.phase = "finished"

    # ------------------------------------------------------------------ read by the server thread

    def calls_by_role(self, stages: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
        calls: dict[str, int] = {}
        for stage, counts in stages.items():
            role = self.role_of.get(stage)
            if role:
                calls[role] = calls.get(role, 0) + counts["computed"]
        return calls

    def gpu(self, stages, accounting, accepted: int) -> dict[str, Any]:
        now = time.monotonic()
        return gpu_hours.measure(self.cost.roles, accounting=accounting, calls=self.calls_by_role(stages),
                                 elapsed_s=now - self.started, walk_s=(self.walk_ended or now) - self.started,
                                 accepted=accepted, requested=self.cost.requested_rows,
                                 server_share=self.cost.server_share,
                                 simulated_gpu_s_per_call=self.cost.simulated_gpu_s_per_call)

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as JSON-able values."""
        stages = self.progress.snapshot()
        accounting = self.summaries()
        in_flight = dict(self.in_flight())
        with self._lock:
            modes = {m: {"accepted": t.accepted, "rejected": t.rejected, "requested": self.plan.modes[m],
                         "top_reasons": t.reasons.most_common(5)} for m, t in self.modes.items()}
            failures = [{"stage": s, "reason": r, "class": c, "count": n}
                        for (s, r, c), n in self.failures.most_common(20)]
            accepted_recent = [self._trajectory(o, modes_in) for o, modes_in in self.accepted_recent]
            rejected_recent = [{**self._trajectory(o, []), "reason": f"{r.stage}/{r.reason}",
                                "detail": r.detail[:300], "transient": r.transient} for o, r in self.rejected_recent]
            final = self.final
        for name, s in stages.items():
            s["in_flight"] = in_flight.get(name, 0)
        provisional = sum(m["accepted"] for m in modes.values())
        if final is not None:
            for m, f in final["modes"].items():
                modes[m].update(accepted=f["accepted"], rejected=f["rejected"],
                                top_reasons=Counter(f["rejects_by_reason"]).most_common(5))
        gpu = (final or {}).get("gpu_hours") or self.gpu(stages, accounting, provisional)
        teacher = accounting.get("teacher") or {}
        return {"phase": self.phase, "elapsed_s": round(time.monotonic() - self.started, 1),
                "executor": self.executor, "outcomes_known": self.outcomes_known,
                "modes_final": final is not None, "samples_done": self.outcomes, "stages": stages, "modes": modes,
                "failures": failures, "accounting": accounting,
                "teacher_tokens_per_s": teacher.get("completion_tokens_per_s"),
                "gpu": gpu, "accepted_recent": accepted_recent, "rejected_recent": rejected_recent}

    def _trajectory(self, outcome: Outcome, modes: list[str]) -> dict[str, Any]:
        texts, images = {}, {}
        for name, value in outcome.fields.items():
            if isinstance(value, ImageRef):
                images[name] = f"{value.sha256}.{value.format}"
            elif isinstance(value, str):
                texts[name] = value[:TEXT_CHARS] + ("…" if len(value) > TEXT_CHARS else "")
        return {"sample_id": outcome.sample_id, "modes": modes, "texts": texts, "images": images}

    def snapshot_elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def latency_snapshot(self) -> dict[str, tuple[list[int], float]]:
        with self._lock:
            return {s: (list(b), self.latency_sum[s]) for s, b in self.latency.items()}

    def failures_snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self.failures)

    def reject_reasons(self) -> dict[tuple[str, str], int]:
        """Per mode and `stage/reason`: the final counts after emit, else the provisional ones."""
        with self._lock:
            if self.final is not None:
                return {(m, r): n for m, f in self.final["modes"].items() for r, n in f["rejects_by_reason"].items()}
            return {(m, r): n for m, t in self.modes.items() for r, n in t.reasons.items()}

    def mode_counts(self) -> tuple[dict[str, tuple[int, int]], bool]:
        """Per mode (accepted, rejected), and whether they are final (after emit)."""
        with self._lock:
            if self.final is not None:
                return {m: (f["accepted"], f["rejected"]) for m, f in self.final["modes"].items()}, True
            return {m: (t.accepted, t.rejected) for m, t in self.modes.items()}, False
