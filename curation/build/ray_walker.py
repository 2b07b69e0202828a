"""A walker actor: the local executor's per-sample walk, inside a Ray Data actor pool.

Each actor builds the backends once (an in-process model loads once per actor, in `check()`),
opens the shared store, and keeps one event loop for its life (aiohttp sessions and the
executor's semaphores belong to one loop). A batch of samples is walked exactly as the local
executor walks them: same stages, keys, seeds and store reads, one outcome per sample written to
the store. It returns one row per batch: the batch's sample ids and what the batch cost (stage
counts, and the actor's backend accounting so far), which is all the driver needs.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import uuid
from typing import Any, Callable

import pyarrow as pa
import ray

from curation.backends.base import Backend
from curation.build.executor import Executor, RunStats
from curation.build.plan import Plan
from curation.build.ray_source import decode_rows
from curation.build.shared_store import SharedStore
from curation.core.progress import Progress
from curation.core.records import Sample

# The run's backends, built from its config: a picklable callable from the entrypoint.
BackendsFactory = Callable[[], dict[str, Backend]]

RESULT_SCHEMA = pa.schema([("sample_ids", pa.list_(pa.string())), ("counts", pa.string()),
                           ("actor", pa.string()), ("accounting", pa.string())])


class WalkerActor:
    def __init__(self, *, make_backends: BackendsFactory, store_url: str, plan: Plan, plan_key: str,
                 run_seed: int, stage_settings: dict[str, dict[str, Any]], actors: int, max_in_flight: int):
        self.backends = make_backends()
        for backend in self.backends.values():
            backend.check()  # loads an in-process model, once per actor
            # The servers see the run's limit in total, not once per actor.
            backend.concurrency = max(1, backend.concurrency // actors)
        self.store = SharedStore(store_url)
        self.loop = asyncio.new_event_loop()
        # The driver prints progress; an actor's own would only interleave in the worker logs.
        silent = Progress([s.name for s in plan.stages], interval=float("inf"), stream=io.StringIO())
        self.executor = Executor(plan, self.backends, self.store, run_seed=run_seed, plan_key=plan_key,
                                 stage_settings=stage_settings, progress=silent, max_in_flight=max_in_flight)
        # Names this actor in the driver's accounting (a restarted actor is a new one), with the
        # GPUs Ray placed it on.
        gpus = ",".join(str(g) for g in ray.get_gpu_ids())
        self.actor = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]} gpus [{gpus}]"

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = decode_rows(batch)
        before = _copy(self.executor.stats)
        self.loop.run_until_complete(self.executor.run(items))
        counts = _minus(self.executor.stats, before)
        accounting = {role: b.summary() for role, b in self.backends.items() if b.summary()}
        ids = [(i if isinstance(i, Sample) else i[0]).sample_id for i in items]
        return pa.Table.from_pylist([{"sample_ids": ids, "counts": json.dumps(counts), "actor": self.actor,
                                      "accounting": json.dumps(accounting)}], schema=RESULT_SCHEMA)

    def __del__(self):
        # Best effort: an actor that Ray stops closes its HTTP sessions; one that is killed cannot.
        if getattr(self, "loop", None) is not None and not self.loop.is_closed():
            for backend in getattr(self, "backends", {}).values():
                self.loop.run_until_complete(backend.aclose())
            self.loop.close()


def _copy(stats: RunStats) -> dict[str, dict[str, int]]:
    return {"computed": dict(stats.computed), "cached": dict(stats.cached), "rejected": dict(stats.rejected)}


def _minus(stats: RunStats, before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    now = _copy(stats)
    return {kind: {stage: n - before[kind].get(stage, 0) for stage, n in now[kind].items()
                   if n - before[kind].get(stage, 0)} for kind in now}
