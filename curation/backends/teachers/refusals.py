"""Whose fault is a refusal: this sample's, or every request's alike? Decided by what else happened.

vLLM refuses a prompt that is over its context once the images are counted with a plain 400
(`param: null`, in-process a `VLLMValidationError` without a parameter), exactly as it refuses
any other request it cannot take. The fields do not say whether the sample or the setting is at
fault, and the message must not be read. What the run has seen does say it:

- once any request of the run has been answered, the settings demonstrably work, and a request
  refused now is refused for what it holds: its sample's kept reject;
- before that, a refused request waits for the verdict. If another request is answered, the
  refusal is its sample's; if every request in flight has been refused, none answered, and that
  stays so for `QUIET_S` (no new request came and was answered), nothing shows the settings can
  work (a server started with a context too small for any prompt of this run, a grammar the engine
  cannot compile): the run stops, nothing stored.

The concurrent first requests of a run are why it waits rather than deciding at once: a too-long
prompt is refused in milliseconds, long before the first answer of its batch arrives. The quiet
period is why it does not decide the moment the refused requests are all that is in flight: the
other samples' first requests may still be on their way (their images being drawn), and how many
are in flight at that instant is an accident of timing, not evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Iterator


#: How long "every request in flight refused, none answered" must hold before the run stops. Long
#: next to the gap between two samples' requests (milliseconds to a few seconds while images are drawn);
#: short next to a run. It delays only a run that is going to stop anyway.
QUIET_S = 10.0


class RefusalJudge:
    """Counts the requests in flight and those answered, and tells a held refusal its verdict."""

    def __init__(self, quiet_s: float = QUIET_S) -> None:
        self.quiet_s = quiet_s
        self._quiet_check: asyncio.TimerHandle | None = None
        self.answered = 0
        self.in_flight = 0
        self.held = 0
        self.refused_alike = False  # every request in flight was refused, none answered: the run stops
        self._decided: asyncio.Event | None = None  # made in the run's event loop, at first use

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Around one request, from sending it to its result (a held refusal included)."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._settle()

    def answer(self) -> None:
        """A request of the run got its answer: the settings work."""
        self.answered += 1
        self._settle()

    async def samples_own(self) -> bool:
        """After a refusal that may be its request's own: True when it is (something was answered),
        False when every request in flight was refused alike with nothing answered."""
        if self.answered:
            return True
        if self.refused_alike:
            return False
        self.held += 1
        try:
            self._settle()
            await self._event().wait()
        finally:
            self.held -= 1
        return self.answered > 0

    def _event(self) -> asyncio.Event:
        if self._decided is None:
            self._decided = asyncio.Event()
        return self._decided

    def _settle(self) -> None:
        if self.answered:
            if self.held or self._decided is not None:
                self._event().set()
        elif self.held and self.held >= self.in_flight and self._quiet_check is None:
            # Only refusals in flight: decide if it stays so for the quiet period.
            self._quiet_check = asyncio.get_running_loop().call_later(self.quiet_s, self._quiet_over)

    def _quiet_over(self) -> None:
        self._quiet_check = None
        if self.answered:
            self._event().set()
        elif self.held and self.held >= self.in_flight:
            self.refused_alike = True
            self._event().set()
