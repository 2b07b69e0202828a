"""`/metrics`: the run's figures for Prometheus, read from `LiveState` at scrape time.

One `CollectorRegistry` per run (never the global one), holding one custom collector: nothing
is counted twice or kept in step with the run; a scrape reads the same counters the page reads.
Names follow Prometheus' conventions: the `irgl_` prefix, `_total` on counters, base units
(seconds). Series that can go down (provisional per-mode counts, replaced by emit's final ones)
are gauges.

    irgl_stage_samples_total{stage, outcome}     passed | rejected | skipped, per stage
    irgl_stage_results_from_store_total{stage}   results read from the store instead of computed
    irgl_stage_planned_samples{stage}            a stage's total, when one process reads the whole source
    irgl_stage_in_flight{stage}                  backend calls running now
    irgl_stage_latency_seconds{stage}            histogram of backend call times
    irgl_rejects_total{stage, reason, class}     every reject of a stage, class transient | sample
    irgl_mode_accepted_samples{mode}             provisional while walking; final once irgl_run_finished is 1
    irgl_mode_rejected_samples{mode}
    irgl_mode_rejects{mode, reason}              first reject per sample and mode, by `stage/reason`
    irgl_backend_calls_total{role}, irgl_backend_requests_total{role}, irgl_backend_retries_total{role}
    irgl_backend_failures_total{role, class}     transient (failed after its retries) | refused (for its sample)
    irgl_backend_tokens_total{role, kind}        prompt | completion
    irgl_gpu_seconds{role, basis}                measured | simulated (writer/gpu_hours.py)
    irgl_gpu_seconds_per_1k_accepted_rows, irgl_projected_gpu_seconds
    irgl_run_elapsed_seconds, irgl_run_finished, irgl_outcomes_total, irgl_run_info{recipe, executor}
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from curation.monitor.state import LATENCY_BUCKETS, LiveState

# A backend summary's counts -> (metric, extra labels). Only numbers that only grow.
HTTP_COUNTS = {"http_requests": ("requests", {}), "http_retries": ("retries", {}),
               "http_failed": ("failures", {"class": "transient"}), "http_refused": ("failures", {"class": "refused"})}
TOKENS = {"prompt_tokens": "prompt", "completion_tokens": "completion"}


class RunCollector(Collector):
    def __init__(self, state: LiveState, recipe: str):
        self.state = state
        self.recipe = recipe

    def collect(self) -> Iterator[Metric]:
        s = self.state
        stages = s.progress.snapshot()
        samples = CounterMetricFamily("irgl_stage_samples", "Samples through each stage, by outcome.",
                                      labels=["stage", "outcome"])
        stored = CounterMetricFamily("irgl_stage_results_from_store", "Stage results read from the store.",
                                     labels=["stage"])
        planned = GaugeMetricFamily("irgl_stage_planned_samples", "Samples a stage will see (when known).",
                                    labels=["stage"])
        for name, c in stages.items():
            samples.add_metric([name, "passed"], c["computed"] + c["cached"] - c["rejected"])
            samples.add_metric([name, "rejected"], c["rejected"])
            samples.add_metric([name, "skipped"], c["skipped"])
            stored.add_metric([name], c["cached"])
            if c["total"] is not None:
                planned.add_metric([name], c["total"])
        yield from (samples, stored, planned)

        in_flight = GaugeMetricFamily("irgl_stage_in_flight", "Backend calls of a stage running now.", labels=["stage"])
        for name, n in sorted(s.in_flight().items()):
            in_flight.add_metric([name], n)
        yield in_flight

        latency = HistogramMetricFamily("irgl_stage_latency_seconds", "Time of each backend call, per stage.",
                                        labels=["stage"])
        for name, (buckets, total) in sorted(s.latency_snapshot().items()):
            bounds = [*(f"{b:g}" for b in LATENCY_BUCKETS), "+Inf"]
            latency.add_metric([name], list(zip(bounds, buckets)), total)
        yield latency

        if s.outcomes_known:
            rejects = CounterMetricFamily("irgl_rejects", "Rejects of each stage, by reason and class.",
                                          labels=["stage", "reason", "class"])
            for (stage, reason, kind), n in sorted(s.failures_snapshot().items()):
                rejects.add_metric([stage, reason, kind], n)
            yield rejects
            yield CounterMetricFamily("irgl_outcomes", "Samples walked to an outcome.", value=s.outcomes)
        counts, final = s.mode_counts()
        if s.outcomes_known or final:  # under Ray the driver learns a mode's counts at emit
            accepted = GaugeMetricFamily("irgl_mode_accepted_samples",
                                         "Accepted samples per mode: provisional until irgl_run_finished is 1.",
                                         labels=["mode"])
            rejected = GaugeMetricFamily("irgl_mode_rejected_samples", "Rejected samples per mode.", labels=["mode"])
            for mode, (a, r) in counts.items():
                accepted.add_metric([mode], a)
                rejected.add_metric([mode], r)
            reasons = GaugeMetricFamily("irgl_mode_rejects", "First reject per sample and mode, by stage/reason.",
                                        labels=["mode", "reason"])
            for (mode, reason), n in sorted(s.reject_reasons().items()):
                reasons.add_metric([mode, reason], n)
            yield from (accepted, rejected, reasons)

        accounting = s.summaries()
        yield from self._backends(accounting)

        snap_gpu = s.final["gpu_hours"] if s.final and s.final.get("gpu_hours") else None
        if snap_gpu is None:
            snap_gpu = s.gpu(stages, accounting, sum(a for a, _ in counts.values()) if s.outcomes_known else 0)
        gpu = GaugeMetricFamily("irgl_gpu_seconds", "GPU-seconds so far per backend role.", labels=["role", "basis"])
        for role, r in snap_gpu["roles"].items():
            gpu.add_metric([role, r["basis"]], r["gpu_s"])
        yield gpu
        total = snap_gpu["total"]
        if total["per_1k_accepted"] is not None:
            yield GaugeMetricFamily("irgl_gpu_seconds_per_1k_accepted_rows", "GPU-seconds per 1,000 accepted rows.",
                                    value=total["per_1k_accepted"] * 3600)
        if total["projected_gpu_hours"] is not None:
            yield GaugeMetricFamily("irgl_projected_gpu_seconds", "GPU-seconds projected for the requested rows.",
                                    value=total["projected_gpu_hours"] * 3600)

        yield GaugeMetricFamily("irgl_run_elapsed_seconds", "Seconds since the run started.",
                                value=s.snapshot_elapsed())
        yield GaugeMetricFamily("irgl_run_finished", "1 once emit has written the dataset (final counts).",
                                value=1 if s.final is not None else 0)
        info = GaugeMetricFamily("irgl_run_info", "The run's recipe and executor.", labels=["recipe", "executor"])
        info.add_metric([self.recipe, s.executor], 1)
        yield info

    def _backends(self, accounting: dict[str, dict]) -> Iterator[Metric]:
        calls = CounterMetricFamily("irgl_backend_calls", "Calls a backend answered.", labels=["role"])
        families = {name: CounterMetricFamily(f"irgl_backend_{name}", doc, labels=["role", *extra])
                    for name, doc, extra in (("requests", "HTTP requests a backend made.", []),
                                             ("retries", "HTTP attempts beyond the first.", []),
                                             ("failures", "HTTP requests that failed, by class.", ["class"]))}
        tokens = CounterMetricFamily("irgl_backend_tokens", "Tokens a backend read or wrote.", labels=["role", "kind"])
        for role, acc in sorted(accounting.items()):
            if isinstance(acc.get("calls"), int):
                calls.add_metric([role], acc["calls"])
            for key, (name, extra) in HTTP_COUNTS.items():
                if isinstance(acc.get(key), int):
                    families[name].add_metric([role, *extra.values()], acc[key])
            for key, kind in TOKENS.items():
                if isinstance(acc.get(key), int):
                    tokens.add_metric([role, kind], acc[key])
        yield from (calls, *families.values(), tokens)


def registry_for(state: LiveState, recipe: str) -> CollectorRegistry:
    """A registry of this run only: tests and repeated runs in one process never collide."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(state, recipe))
    return registry
