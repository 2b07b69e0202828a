"""An asyncio micro-batcher: many concurrent single requests in, one model call per batch out.

Stages ask for one image's scores at a time, from many samples in flight. The batcher queues
the requests and hands them to `run_batch` in groups of at most `max_batch_size`, waiting at most
`max_wait_s` after the first request of a group for others to join. `run_batch` is blocking
(a model's forward pass): it runs on one worker thread, one batch at a time, so a model is never
called from two threads and the next batch fills while the current one runs.

A batch that raises fails every request in it with that exception: a broken model is a broken
run (the executor stops), never a silent per-sample None.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generic, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class MicroBatcher(Generic[Item, Result]):
    def __init__(self, run_batch: Callable[[list[Item]], Sequence[Result]], *, max_batch_size: int,
                 max_wait_s: float, name: str = "batcher"):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Sizes of the batches run so far (the benchmark and the tests read them).
        self.batch_sizes: list[int] = []

    async def submit(self, item: Item) -> Result:
        self._ensure_worker()
        future = self._loop.create_future()
        await self._queue.put((item, future))
        return await future

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            # A new event loop (each run has its own): queue and worker belong to one loop.
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = loop.create_task(self._work())

    async def _collect(self) -> list[tuple[Item, asyncio.Future]]:
        batch = [await self._queue.get()]
        deadline = self._loop.time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _work(self) -> None:
        while True:
            batch = await self._collect()
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            items = [item for item, _ in live]
            try:
                results = await self._loop.run_in_executor(self._thread, self.run_batch, items)
                if len(results) != len(items):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
            except Exception as exc:  # every waiter of this batch sees the failure itself
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batch_sizes.append(len(items))
            for (_, fut), result in zip(live, results):
                if not fut.done():
                    fut.set_result(result)

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._worker = None

    def shutdown(self) -> None:
        self._thread.shutdown(wait=False)
