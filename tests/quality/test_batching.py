"""The micro-batcher groups concurrent requests, bounds batch size, and fails a broken batch loudly."""

from __future__ import annotations

import asyncio

import pytest

from curation.backends.scorers.batching import MicroBatcher


def test_concurrent_requests_share_batches_of_at_most_max_size():
    calls = []

    def run_batch(items):
        calls.append(list(items))
        return [x * 10 for x in items]

    batcher = MicroBatcher(run_batch, max_batch_size=4, max_wait_s=0.05)

    async def main():
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.aclose()
        return results

    assert asyncio.run(main()) == [i * 10 for i in range(10)]
    assert [len(c) for c in calls] == [4, 4, 2]
    assert sorted(x for c in calls for x in c) == list(range(10))
    assert batcher.batch_sizes == [4, 4, 2]


def test_a_lone_request_waits_at_most_max_wait():
    batcher = MicroBatcher(lambda items: list(items), max_batch_size=64, max_wait_s=0.01)

    async def main():
        result = await asyncio.wait_for(batcher.submit("x"), timeout=5)
        await batcher.aclose()
        return result

    assert asyncio.run(main()) == "x"
    assert batcher.batch_sizes == [1]


def test_a_failing_batch_fails_every_request_in_it_and_the_next_batch_still_runs():
    def run_batch(items):
        if "bad" in items:
            raise RuntimeError("model crashed")
        return list(items)

    batcher = MicroBatcher(run_batch, max_batch_size=2, max_wait_s=0.05)

    async def main():
        first = await asyncio.gather(batcher.submit("bad"), batcher.submit("ok"), return_exceptions=True)
        second = await batcher.submit("fine")
        await batcher.aclose()
        return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and str(r) == "model crashed" for r in first)
    assert second == "fine"


def test_a_wrong_number_of_results_is_an_error():
    batcher = MicroBatcher(lambda items: [], max_batch_size=2, max_wait_s=0)

    async def main():
        try:
            return await batcher.submit(1)
        finally:
            await batcher.aclose()

    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        asyncio.run(main())


def test_each_event_loop_gets_its_own_worker():
    batcher = MicroBatcher(lambda items: list(items), max_batch_size=2, max_wait_s=0)
    for value in ("first run", "second run"):  # each pipeline run has its own loop
        assert asyncio.run(batcher.submit(value)) == value
