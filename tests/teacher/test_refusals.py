"""Whose fault a refusal is (curation/backends/teachers/refusals.py), whatever the timing of the others."""

from __future__ import annotations

import asyncio

from curation.backends.teachers.refusals import RefusalJudge


def test_a_refusal_alone_in_flight_waits_for_the_next_samples_request():
    # The over-long sample's request is refused while it is the only one in flight (the other
    # samples' images are still being drawn); a request that starts later and is answered makes it
    # the sample's own refusal, not a reason to stop the run.
    async def go():
        judge = RefusalJudge(quiet_s=5.0)

        async def refused():
            with judge.request():
                return await judge.samples_own()

        async def answered_later():
            await asyncio.sleep(0.2)
            with judge.request():
                await asyncio.sleep(0.05)
                judge.answer()

        verdict, _ = await asyncio.gather(refused(), answered_later())
        return verdict

    assert asyncio.run(go()) is True


def test_only_refusals_for_the_quiet_period_stop_the_run():
    async def go():
        judge = RefusalJudge(quiet_s=0.2)

        async def refused():
            with judge.request():
                return await judge.samples_own()

        verdicts = await asyncio.gather(*(refused() for _ in range(3)))
        return verdicts, judge.refused_alike, await refused()  # later refusals: decided at once

    verdicts, alike, later = asyncio.run(go())
    assert verdicts == [False, False, False] and alike and later is False
