"""A walker actor: the local executor's per-sample walk, inside a Ray Data actor pool.

Each actor builds the backends once and runs their start-up checks (an in-process model loads
once per actor, in `check()`), opens the shared store, and runs one event loop in a thread of its
own for its whole life (aiohttp sessions and the walker's semaphores belong to one loop). Ray Data
may hand an actor several batches at once (`executor.batches_per_actor`): each call submits its
samples to that one loop and waits, so batches overlap (no actor idles on the slowest sample of a
batch) while one `SampleWalker` keeps each backend's limit on requests in flight. A sample is
walked exactly as the local executor walks it: same stages, keys, seeds and store reads, one
outcome per sample in the store.

Each call returns one row: the batch's sample ids and the actor's counts and backend accounting so
far, numbered, so the driver keeps the latest per actor whatever order the rows arrive in.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from typing import Any, Callable

import pyarrow as pa
import ray

from curation.backends.base import Backend, BackendUnavailable
from curation.backends.factory import distinct
from curation.pipeline.executor import SampleWalker
from curation.pipeline.plan import Plan
from curation.pipeline.ray_source import decode_batches
from curation.pipeline.shared_store import SharedStore
from curation.core.records import Sample

# The run's backends, built from its config: a picklable callable from the entrypoint.
BackendsFactory = Callable[[], dict[str, Backend]]

RESULT_SCHEMA = pa.schema([("sample_ids", pa.list_(pa.string())), ("gate_rejects", pa.int64()), ("actor", pa.string()),
                           ("report", pa.int64()), ("counts", pa.string()), ("accounting", pa.string())])


class WalkerError(Exception):
    """A walker's own error on its way to the driver, untouched.

    Ray Data appends its retry advice to a failed task's exception message ("To change retry
    attempts ... configure `ray.data.DataContext`", `ray.data._internal.util.
    _annotate_exception_with_retry_context`): raised as is, a server gone would reach the user as
    two paragraphs, the second one wrong for it. With the error itself as the first argument, the
    advice lands in an argument of its own and the driver raises `error` as the walker raised it.
    """

    def __init__(self, error: BaseException, *appended: Any):  # *appended: what Ray Data adds
        super().__init__(error, *appended)

    @property
    def error(self) -> BaseException:
        return self.args[0]


class WalkerActor:
    def __init__(self, *, make_backends: BackendsFactory, store_url: str, plan: Plan, run_key: str,
                 run_seed: int, stage_settings: dict[str, dict[str, Any]], actors: int):
        self.backends = make_backends()
        self.owned = distinct(self.backends, plan.roles)  # a role that shares another's backend: that one, once
        # A backend that cannot run says why in one sentence (BackendUnavailable). Raised here it
        # would reach the driver as "the actor died in its creation task", its sentence lost in
        # Ray's text; kept and raised by the first call, it reaches the driver as the error itself.
        self.unavailable: BackendUnavailable | None = None
        for backend in self.owned.values():
            try:
                backend.check()  # loads an in-process model, once per actor
            except BackendUnavailable as exc:
                self.unavailable = exc
                break
            # The servers see the run's limit in total, not once per actor.
            backend.concurrency = max(1, backend.concurrency // actors)
        self.store = SharedStore(store_url)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="walker-loop", daemon=True).start()
        self._report_lock = threading.Lock()
        self._reports = 0
        # No progress of its own: the driver prints it from the counts each call returns.
        self.walker = SampleWalker(plan, self.backends, self.store, run_seed=run_seed, run_key=run_key,
                                   stage_settings=stage_settings)
        # Names this actor in the driver's accounting (a restarted actor is a new one), with the
        # GPUs Ray placed it on.
        gpus = ",".join(str(g) for g in ray.get_gpu_ids())
        self.actor = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]} gpus [{gpus}]"

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.unavailable is not None:
            raise WalkerError(self.unavailable)
        samples: list[Sample] = decode_batches(batch)
        # A broken run (server gone, disk full) raises here, failing the run: the driver reports the error itself.
        try:
            asyncio.run_coroutine_threadsafe(self._walk(samples), self.loop).result()
        except Exception as exc:
            raise WalkerError(exc) from None
        with self._report_lock:  # counts read on this thread while the loop thread runs on
            self._reports += 1
            report = self._reports
            counts = asyncio.run_coroutine_threadsafe(self._counts(), self.loop).result()
        return pa.Table.from_pylist([{"sample_ids": [s.sample_id for s in samples],
                                      "gate_rejects": sum(s.reject is not None for s in samples),
                                      "actor": self.actor, "report": report, **counts}], schema=RESULT_SCHEMA)

    async def _walk(self, samples: list[Sample]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for sample in samples:
                    group.create_task(self.walker.walk(sample))
        except BaseExceptionGroup as failure:
            raise failure.exceptions[0] from None  # the cause itself, as the local executor reports it

    async def _counts(self) -> dict[str, str]:
        """The actor's counts and accounting so far, read on the loop's thread (no torn reads)."""
        stats = self.walker.stats
        counts = {"computed": stats.computed, "cached": stats.cached, "rejected": stats.rejected}
        accounting = {role: b.summary() for role, b in self.owned.items() if b.summary()}
        return {"counts": json.dumps(counts), "accounting": json.dumps(accounting)}
