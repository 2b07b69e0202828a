"""The local executor: streams samples through the plan's stages with bounded concurrency.

Two pieces, kept apart so that another executor (Ray) reuses the first:

- `SampleWalker` takes one sample through the stages its modes need. For each stage it computes
  the stage key, reads the store, and calls the backend only on a miss; every result is written
  the moment it exists, then the sample's `Outcome` is written. It knows nothing about modes'
  columns or shards.
- `Executor` feeds the walker from an iterator of samples (read by a thread of its own, so a
  slow source never blocks the event loop, and handed over one by one as they are read), with at most `max_in_flight` samples open at once and
  one semaphore per backend role (`backend.concurrency` requests in flight). Memory stays flat
  whatever the number of samples: nothing is kept per sample once its outcome is stored.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, Protocol

from curation.backends.base import Backend
from curation.pipeline.plan import Plan
from curation.pipeline.stages.base import Stage, StageContext, derive_seed
from curation.pipeline.store import Store
from curation.core.progress import Progress
from curation.core.records import Outcome, Reject, Sample, StageOutput

GATES = "gates"


@dataclass
class RunStats:
    computed: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    samples: int = 0  # samples walked (the gates' rejects included)
    first_result_at: float | None = None  # time.monotonic() when the first backend call returned

    @property
    def backend_calls(self) -> int:
        return sum(self.computed.values())

    def add(self, other: "RunStats") -> None:
        """Fold another walker's counts into these (executors with several walkers)."""
        for name in ("computed", "cached", "rejected"):
            mine, theirs = getattr(self, name), getattr(other, name)
            for stage, count in theirs.items():
                mine[stage] = mine.get(stage, 0) + count
        self.samples += other.samples
        if other.first_result_at is not None:
            self.first_result_at = min(self.first_result_at or other.first_result_at, other.first_result_at)


class WalkObserver(Protocol):
    """Sees what the walker does, on the event loop's thread (the live page, `curation/monitor/`).

    Both calls must return at once (append to a deque, bump a counter): they run between a
    sample's stages, so anything slow here slows the run."""

    def on_result(self, stage: str, seconds: float, result: StageOutput | Reject) -> None:
        """A stage result computed by a backend call (not read from the store), and how long it took."""

    def on_outcome(self, outcome: Outcome) -> None:
        """A sample's outcome, just written to the store."""


class SampleWalker:
    """One sample at a time through its stages; results and the outcome go to the store.

    Safe to share between many concurrent `walk` calls in one event loop: a second sample whose
    stage has the same key as one being computed waits for it instead of computing it again.
    """

    def __init__(self, plan: Plan, backends: dict[str, Backend], store: Store, *, run_seed: int, run_key: str,
                 stage_settings: dict[str, dict[str, Any]], progress: Progress | None = None,
                 observer: WalkObserver | None = None):
        self.plan = plan
        self.observer = observer
        self.in_flight: dict[str, int] = {}  # per stage: backend calls running now (read by the live page)
        self.backends = backends
        self.store = store
        self.run_seed = run_seed
        self.run_key = run_key
        self.stage_settings = stage_settings
        self.progress = progress
        self.identities = {role: b.identity() for role, b in backends.items()}
        # One limit per backend object: a role that shares another's backend (a judge asking the
        # teacher) shares its requests in flight too.
        per_backend = {id(b): asyncio.Semaphore(max(1, b.concurrency)) for b in backends.values()}
        self.limits = {role: per_backend[id(b)] for role, b in backends.items()}
        self.stats = RunStats()
        self._in_flight: dict[str, asyncio.Future] = {}  # keys being computed now
        # Transient rejects made by this run: another sample with the same key reads them as they
        # are instead of asking again. Only those are kept (rare), so memory does not grow with n.
        self._transient_this_run: set[str] = set()

    async def walk(self, sample: Sample) -> Outcome:
        outcome = Outcome(sample.sample_id, sample.source_id, sample.index,
                          lineage={"source": sample.lineage.get("source", {})}, dedup=sample.dedup)
        stages = self.plan.stages_for(sample.index)
        self.stats.samples += 1
        if sample.reject is not None:
            outcome.rejects[GATES] = sample.reject
            for stage in stages:
                self._progress(stage.name, skipped=1)
        else:
            record: dict[str, Any] = dict(sample.fields)
            for stage in stages:
                if any(f not in record for f in stage.needs) or self._no_mode_needs(stage, sample.index,
                                                                                   outcome.rejects):
                    self._progress(stage.name, skipped=1)
                    continue
                result, key, seed = await self._result(stage, sample, record)
                if isinstance(result, Reject):
                    outcome.rejects[stage.name] = result
                    continue
                # None is kept: "made, and empty" (a base model that wrote no thinking) is for the
                # stage that needs it to reject with a reason, not a reason to skip that stage.
                record.update(result.fields)
                outcome.lineage[stage.name] = {"key": key, "seed": seed, **result.lineage}
            outcome.fields = record
        self.store.put_outcome(self.run_key, outcome)
        if self.observer is not None:
            self.observer.on_outcome(outcome)
        return outcome

    def _no_mode_needs(self, stage: Stage, index: int, rejects: dict[str, Reject]) -> bool:
        """True when every mode that needs this stage has already rejected the sample."""
        if not rejects or stage.name in self.plan.report_stages:
            return False
        users = [m for m in self.plan.modes_for(index) if stage.name in self.plan.mode_stages[m]]
        return all(any(s in rejects for s in self.plan.mode_stages[m]) for m in users)

    async def _result(self, stage: Stage, sample: Sample, record: dict) -> tuple[StageOutput | Reject, str, int]:
        backend = self.backends.get(stage.role) if stage.role else None
        seed = derive_seed(self.run_seed, sample.sample_id, stage.name)
        settings = self.stage_settings.get(stage.name, {})
        inputs = {f: record[f] for f in stage.needs}
        key = stage.key(inputs, self.identities.get(stage.role), seed, settings)

        result = self.store.get_result(key)
        # A transient reject (server error after the last retry) is retried by the next run.
        stale = isinstance(result, Reject) and result.transient and key not in self._transient_this_run
        if result is not None and not stale:
            self._count(stage.name, "cached", result)
            return result, key, seed
        if key in self._in_flight:
            result = await asyncio.shield(self._in_flight[key])
            self._count(stage.name, "cached", result)
            return result, key, seed

        future = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            ctx = StageContext(backend=backend, store=self.store, seed=seed, settings=settings)
            limit = self.limits.get(stage.role)
            if limit is None:
                result = await self._timed(stage, inputs, ctx)
            else:
                async with limit:
                    result = await self._timed(stage, inputs, ctx)
            if isinstance(result, Reject) and result.stage != stage.name:
                result = replace(result, stage=stage.name)  # a stage stamps its own rejects
            self.store.put_result(key, stage.name, result)
            if isinstance(result, Reject) and result.transient:
                self._transient_this_run.add(key)
            future.set_result(result)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the raise below reports it
            raise
        finally:
            del self._in_flight[key]
        if self.stats.first_result_at is None:
            self.stats.first_result_at = time.monotonic()
        self._count(stage.name, "computed", result)
        return result, key, seed

    async def _timed(self, stage: Stage, inputs: dict, ctx: StageContext) -> StageOutput | Reject:
        """Run the stage, counted as in flight while it runs and timed for the observer."""
        self.in_flight[stage.name] = self.in_flight.get(stage.name, 0) + 1
        started = time.perf_counter()
        try:
            result = await stage.run(inputs, ctx)
        finally:
            self.in_flight[stage.name] -= 1
        if self.observer is not None:
            self.observer.on_result(stage.name, time.perf_counter() - started, result)
        return result

    def _count(self, stage: str, kind: str, result: StageOutput | Reject) -> None:
        bucket = getattr(self.stats, kind)
        bucket[stage] = bucket.get(stage, 0) + 1
        rejected = isinstance(result, Reject)
        if rejected:
            self.stats.rejected[stage] = self.stats.rejected.get(stage, 0) + 1
        self._progress(stage, **{kind: 1}, rejected=int(rejected))

    def _progress(self, stage: str, **counts: int) -> None:
        if self.progress is not None:
            self.progress.update(stage, **counts)


_END = object()


class Executor:
    """The local executor: one event loop, `max_in_flight` samples open, one walker."""

    def __init__(self, walker: SampleWalker, *, max_in_flight: int = 256, read_ahead: int = 64,
                 throttle_s: float = 0.0):
        self.walker = walker
        self.max_in_flight = max_in_flight
        self.read_ahead = read_ahead
        # Each sample waits this long before its walk (`run.throttle_s`): a run slow enough to
        # watch (tests and demos of the live page). 0 in any real run.
        self.throttle_s = throttle_s

    async def run(self, samples: Iterable[Sample]) -> RunStats:
        window = asyncio.Semaphore(self.max_in_flight)

        async def one(sample: Sample) -> None:
            try:
                if self.throttle_s > 0:
                    await asyncio.sleep(self.throttle_s)
                await self.walker.walk(sample)
            finally:
                window.release()

        try:
            async with asyncio.TaskGroup() as group:
                async for sample in _in_thread(iter(samples), self.read_ahead):
                    await window.acquire()
                    group.create_task(one(sample))
        except BaseExceptionGroup as failure:
            # A broken run (server gone, disk full): report its cause itself, not a group of
            # cancelled sample tasks. Finished results are already in the store.
            raise failure.exceptions[0] from None
        if self.walker.progress is not None:
            self.walker.progress.maybe_print(force=True)
        return self.walker.stats


async def _in_thread(iterator: Iterator[Sample], capacity: int):
    """Items of a blocking iterator (source reading, image decoding in the gates), read by a
    thread of their own and handed over one by one as they come, at most `capacity` ahead of
    the consumer: the first sample is worked on as soon as it is read, and the event loop keeps
    serving the requests in flight while the source is slow."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    room = threading.Semaphore(capacity)
    stop = threading.Event()

    def hand_over(item, error=None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the loop is closed: the consumer is gone
            stop.set()

    def read() -> None:
        try:
            for item in iterator:
                while not room.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                hand_over(item)
            hand_over(_END)
        except BaseException as exc:  # the source or the gates failed: the run reports it
            hand_over(_END, exc)

    reader = threading.Thread(target=read, name="source-reader", daemon=True)
    reader.start()
    try:
        while True:
            item, error = await queue.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            room.release()
            yield item
    finally:
        stop.set()
