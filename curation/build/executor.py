"""The local executor: walks samples through the plan's stages with bounded concurrency.

For each sample and stage it computes the stage key, reads the store, and calls the backend
only on a miss; every result is written the moment it exists. It knows nothing about modes'
columns or shards: it leaves one outcome per sample (fields, lineage, rejects) for `emit`.

Concurrency: one semaphore per backend role (`backend.concurrency` requests in flight), and at
most `max_in_flight` samples open at once so memory stays flat on 300K-sample runs. Another
executor (Ray, Slurm arrays) can run the same stages over the same store layout.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Iterable

from curation.backends.base import Backend
from curation.build.plan import Plan
from curation.core.progress import Progress
from curation.core.records import Reject, Sample, StageOutput, encode_value
from curation.build.stages.base import Stage, StageContext, derive_seed
from curation.build.store import Store


@dataclass
class RunStats:
    computed: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def backend_calls(self) -> int:
        return sum(self.computed.values())


class Executor:
    def __init__(self, plan: Plan, backends: dict[str, Backend], store: Store, *, run_seed: int,
                 plan_key: str, stage_settings: dict[str, dict[str, Any]], progress: Progress,
                 max_in_flight: int = 256):
        self.plan = plan
        self.backends = backends
        self.store = store
        self.run_seed = run_seed
        self.plan_key = plan_key
        self.stage_settings = stage_settings
        self.progress = progress
        self.max_in_flight = max_in_flight
        self.identities = {role: b.identity() for role, b in backends.items()}
        self.limits = {role: asyncio.Semaphore(max(1, b.concurrency)) for role, b in backends.items()}
        self.stats = RunStats()
        # Keys being computed right now: a second sample with the same inputs waits for the first.
        self._in_flight: dict[str, asyncio.Future] = {}
        self._computed_this_run: set[str] = set()

    async def run(self, samples: Iterable[Sample | tuple[Sample, Reject]]) -> RunStats:
        window = asyncio.Semaphore(self.max_in_flight)

        async def one(item):
            try:
                await self._walk(item)
            finally:
                window.release()

        try:
            async with asyncio.TaskGroup() as group:
                for item in samples:
                    await window.acquire()
                    group.create_task(one(item))
        except BaseExceptionGroup as failure:
            # A broken run (server gone, disk full): report its cause itself, not a group of
            # cancelled sample tasks. Finished results are already in the store.
            raise failure.exceptions[0] from None
        self.progress.maybe_print(force=True)
        return self.stats

    async def _walk(self, item: Sample | tuple[Sample, Reject]) -> None:
        sample, gate_reject = (item, None) if isinstance(item, Sample) else item
        outcome = {"sample_id": sample.sample_id, "source_id": sample.source_id, "index": sample.index,
                   "fields": {}, "lineage": {"source": sample.lineage.get("source", {})}, "rejects": {}}
        stages = self.plan.stages_for(sample.index)
        if gate_reject is not None:
            outcome["rejects"]["gates"] = gate_reject.to_json()
            for stage in stages:
                self.progress.update(stage.name, skipped=1)
            self.store.put_outcome(self.plan_key, sample.sample_id, outcome)
            return

        record: dict[str, Any] = dict(sample.fields)
        for stage in stages:
            if any(f not in record for f in stage.needs) or self._useless(stage, sample.index, outcome["rejects"]):
                self.progress.update(stage.name, skipped=1)
                continue
            result, key, seed = await self._result(stage, sample, record)
            if isinstance(result, Reject):
                outcome["rejects"][stage.name] = result.to_json()
                continue
            # None is kept: "made, and empty" (a base model that wrote no thinking) is for the
            # stage that needs it to reject with a reason, not a reason to skip that stage.
            record.update(result.fields)
            outcome["lineage"][stage.name] = {"key": key, "seed": seed, **result.lineage}
        outcome["fields"] = {k: encode_value(v) for k, v in record.items()}
        self.store.put_outcome(self.plan_key, sample.sample_id, outcome)

    def _useless(self, stage: Stage, index: int, rejects: dict) -> bool:
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
        stale = isinstance(result, Reject) and result.transient and key not in self._computed_this_run
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
                result = await stage.run(inputs, ctx)
            else:
                async with limit:
                    result = await stage.run(inputs, ctx)
            self.store.put_result(key, stage.name, result)
            self._computed_this_run.add(key)
            future.set_result(result)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: the raise below reports it
            raise
        finally:
            del self._in_flight[key]
        self._count(stage.name, "computed", result)
        return result, key, seed

    def _count(self, stage: str, kind: str, result: StageOutput | Reject) -> None:
        bucket = getattr(self.stats, kind)
        bucket[stage] = bucket.get(stage, 0) + 1
        rejected = isinstance(result, Reject)
        if rejected:
            self.stats.rejected[stage] = self.stats.rejected.get(stage, 0) + 1
        self.progress.update(stage, **{kind: 1}, rejected=int(rejected))
