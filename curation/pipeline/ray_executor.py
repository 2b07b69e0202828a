"""`executor=ray`: the same plan, stages and backends on Ray Data, on one machine or a cluster.

    read (one task: source rows through the gates)  →  walk (an actor pool: the stages)  →  driver

The read task streams gated samples into Ray Data; walker actors (`ray_walker.WalkerActor`) walk
batches of them through the stages against the shared store; the driver only counts what comes
back (progress, backend calls, accounting) and keeps the sample ids. Emit then runs on the
driver over the same store, exactly as after the local executor, which is why both write the
same bytes. See docs/scale_out.md.

Failures. A walker actor that dies is restarted by Ray Data and its batch retried: the results
finished before the crash are read back from the store, so nothing is computed twice beyond the
calls that were in flight, and outcomes are keyed by sample id, so no sample is counted twice. An
error a walker raises (a backend that cannot run, a server gone for good) is not retried: it fails
the run, the driver raises the walker's own error, and the same command resumes from the store.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.data
from ray.exceptions import RayTaskError

import curation
from curation.pipeline.executor import GATES, RunStats
from curation.pipeline.plan import Plan
from curation.pipeline.ray_source import GatedSampleSource, SampleReader
from curation.pipeline.ray_walker import BackendsFactory, WalkerActor, WalkerError
from curation.core.config import ConfigError
from curation.core.progress import Progress


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None  # None: start a local Ray; "auto": join this node's cluster
    actors: int = 2
    num_gpus_per_actor: float = 0
    num_cpus_per_actor: float = 0.5
    batch_size: int = 32
    batches_per_actor: int = 4
    read_num_cpus: float = 0.5
    local_num_cpus: int | None = None
    local_num_gpus: int | None = None

    def __post_init__(self):
        if self.actors < 1:
            raise ConfigError(f"executor.actors={self.actors} must be at least 1")
        if self.batch_size < 1:
            raise ConfigError(f"executor.batch_size={self.batch_size} must be at least 1")
        if self.batches_per_actor < 1:
            raise ConfigError(f"executor.batches_per_actor={self.batches_per_actor} must be at least 1")
        for name in ("num_gpus_per_actor", "num_cpus_per_actor", "read_num_cpus"):
            if getattr(self, name) < 0:
                raise ConfigError(f"executor.{name}={getattr(self, name)} cannot be negative")

    @classmethod
    def from_config(cls, node: Any) -> "RaySettings":
        if node.get("store") != "shared":
            raise ConfigError(f"executor=ray needs executor.store=shared (got {node.get('store')!r}): "
                              "its workers on every node read and write the store under cache=")
        local = node.get("local") or {}
        return cls(address=node.get("address"), actors=int(node.actors),
                   num_gpus_per_actor=float(node.num_gpus_per_actor), num_cpus_per_actor=float(node.num_cpus_per_actor),
                   batch_size=int(node.batch_size), batches_per_actor=int(node.batches_per_actor),
                   read_num_cpus=float(node.read_num_cpus),
                   local_num_cpus=local.get("num_cpus"), local_num_gpus=local.get("num_gpus"))


def connect(settings: RaySettings) -> None:
    """Join the cluster `address` names, or start a local Ray; reuse one this process already has."""
    if ray.is_initialized():
        return
    if settings.address is not None:
        ray.init(address=settings.address, include_dashboard=False, log_to_driver=False)
        return
    # A local Ray's workers import the same `curation` as this driver (a checkout, not whatever
    # is installed); a cluster's nodes must have it installed (docs/scale_out.md).
    package_root = str(Path(curation.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=settings.local_num_cpus, num_gpus=settings.local_num_gpus, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})


@dataclass
class RayRun:
    """What the driver learnt from the walk: the executor's counts, accounting and the sample ids."""

    stats: RunStats
    accounting: dict[str, dict[str, Any]]
    sample_ids: list[str]
    actors: list[str]  # every walker actor that returned a batch: host:pid:id gpus [ids]


class RayExecutor:
    def __init__(self, plan: Plan, *, make_backends: BackendsFactory, read_samples: SampleReader, store_url: str,
                 run_seed: int, run_key: str, stage_settings: dict[str, dict[str, Any]], progress: Progress,
                 settings: RaySettings):
        self.plan = plan
        self.make_backends = make_backends
        self.read_samples = read_samples
        self.store_url = store_url
        self.run_seed = run_seed
        self.run_key = run_key
        self.stage_settings = stage_settings
        self.progress = progress
        self.settings = settings
        self._latest: dict[str, dict[str, Any]] = {}  # actor -> its latest report, while the walk runs

    def accounting(self) -> dict[str, dict[str, Any]]:
        """The actors' accounting so far (the live page asks from its own thread while `run` goes on)."""
        return merge_accounting([r["accounting"] for r in list(self._latest.values())])

    def dataset(self) -> ray.data.Dataset:
        s = self.settings
        source = GatedSampleSource(self.read_samples, self.store_url, batch_size=s.batch_size)
        # Two settings, captured by this dataset only. Ray Data merges a task's output into blocks
        # of up to 128 MiB before passing them on: the whole source would go to one actor, after
        # the source is read; a block per row (a row is a batch of samples) keeps the stream moving
        # and spreads it over the actors. And a walker's error (a backend that cannot run, a
        # server gone) reaches the driver as itself, not as a UserCodeException that has lost it.
        context = ray.data.DataContext.get_current()
        saved = context.target_max_block_size, context.raise_original_map_exception
        context.target_max_block_size, context.raise_original_map_exception = 1, True
        try:
            rows = ray.data.read_datasource(source, override_num_blocks=1, num_cpus=s.read_num_cpus)
            return self._walk(rows)
        finally:
            context.target_max_block_size, context.raise_original_map_exception = saved

    def _walk(self, rows: ray.data.Dataset) -> ray.data.Dataset:
        s = self.settings
        return rows.map_batches(
            WalkerActor, batch_format="pyarrow", batch_size=1,  # one row: one batch of samples
            compute=ray.data.ActorPoolStrategy(size=s.actors, max_tasks_in_flight_per_actor=s.batches_per_actor,
                                               max_concurrent_calls_per_actor=s.batches_per_actor,
                                               enable_true_multi_threading=True),
            num_cpus=s.num_cpus_per_actor, num_gpus=s.num_gpus_per_actor,
            fn_constructor_kwargs=dict(make_backends=self.make_backends, store_url=self.store_url, plan=self.plan,
                                       run_key=self.run_key, run_seed=self.run_seed,
                                       stage_settings=self.stage_settings, actors=s.actors))

    def run(self) -> RayRun:
        connect(self.settings)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the run's own progress lines say the same, once
        latest = self._latest  # actor -> its latest report (counts so far)
        sample_ids: list[str] = []
        first_result_at: float | None = None
        broken: BaseException | None = None
        try:
            for row in self.dataset().iter_rows():
                sample_ids.extend(row["sample_ids"])
                self.progress.update(GATES, computed=len(row["sample_ids"]), rejected=row["gate_rejects"])
                known = latest.get(row["actor"])
                if known is None or row["report"] > known["report"]:
                    counts = json.loads(row["counts"])
                    self._advance(counts, known["counts"] if known else {})
                    if first_result_at is None and any(counts.get("computed", {}).values()):
                        first_result_at = time.monotonic()  # as the driver saw it: actors' clocks differ
                    latest[row["actor"]] = {"report": row["report"], "counts": counts,
                                            "accounting": json.loads(row["accounting"])}
        except RayTaskError as failure:
            # A broken run: report the walker's own error (server gone, disk full), not Ray's wrapper.
            cause = failure.cause
            broken = cause.error if isinstance(cause, WalkerError) else cause or failure
        if broken is not None:
            # Raised here, not in the handler: raised there, it would keep Ray's error as its
            # __context__, whose traceback holds the failed execution's frames and with them its
            # actors, which then keep their CPUs for as long as the caller keeps the error (a
            # notebook, a test): the next run's read task never gets a CPU and waits for ever.
            raise broken
        self.progress.maybe_print(force=True)
        # Samples by id: a batch retried after its actor died is walked (and reported) twice,
        # and its outcomes written twice under the same names.
        sample_ids = sorted(set(sample_ids))
        stats = RunStats(samples=len(sample_ids), first_result_at=first_result_at)
        for report in latest.values():
            for kind in ("computed", "cached", "rejected"):
                bucket = getattr(stats, kind)
                for stage, n in report["counts"].get(kind, {}).items():
                    bucket[stage] = bucket.get(stage, 0) + n
        return RayRun(stats=stats, accounting=merge_accounting(r["accounting"] for r in latest.values()),
                      sample_ids=sample_ids, actors=sorted(latest))

    def _advance(self, counts: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> None:
        """Move the progress lines on by what one actor did since its previous report."""
        def since(kind: str, stage: str) -> int:
            return counts.get(kind, {}).get(stage, 0) - before.get(kind, {}).get(stage, 0)

        for stage in {*counts.get("computed", {}), *counts.get("cached", {})}:
            self.progress.update(stage, computed=since("computed", stage), cached=since("cached", stage),
                                 rejected=since("rejected", stage))


def merge_accounting(per_actor) -> dict[str, dict[str, Any]]:
    """One accounting per role over all actors: counts add up, wall time is the longest actor's.

    Rates (`*_per_s`, `*_per_teacher_hour`) are recomputed from the sums over that wall time,
    which is what the actors delivered together.
    """
    merged: dict[str, dict[str, Any]] = {}
    rates: dict[str, set[str]] = {}
    for roles in per_actor:
        for role, acc in roles.items():
            into = merged.setdefault(role, {})
            rates.setdefault(role, set()).update(k for k in acc if k in _RATES)
            for key, value in acc.items():
                if key == "wall_s":
                    into[key] = max(into.get(key, 0.0), value)
                elif isinstance(value, int) and not isinstance(value, bool):
                    into[key] = into.get(key, 0) + value
    for role, acc in merged.items():
        wall = acc.get("wall_s") or 0
        for rate in sorted(rates[role]):
            count, per_second = _RATES[rate]
            acc[rate] = round(acc.get(count, 0) * per_second / wall, 2) if wall > 0 else None
    return merged


# Rate fields a backend's summary may have: (the count they divide, seconds per unit of time).
_RATES = {"completion_tokens_per_s": ("completion_tokens", 1), "calls_per_teacher_hour": ("calls", 3600)}
