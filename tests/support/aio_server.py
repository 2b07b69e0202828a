"""Run a test server on 127.0.0.1 in a background thread (its own event loop).

It serves either an aiohttp application (the fault proxy) or an asyncio protocol factory (the
fake OpenAI endpoint).

Test servers (the fake OpenAI endpoint, the fault proxy) live in a thread rather than in the test's
event loop so that synchronous code — `curation.run.main`, a backend's `check()` — can call them.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

from aiohttp import web


class ServerThread:
    """`with ServerThread(app) as server: server.url` — bound to a free port, stopped on exit."""

    def __init__(self, app: web.Application | Callable[[], asyncio.Protocol], *, host: str = "127.0.0.1",
                 port: int = 0, backlog: int = 4096):
        self.app = app
        self.host, self.port, self.backlog = host, port, backlog
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-server", daemon=True)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ServerThread":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        if not isinstance(self.app, web.Application):
            self._server = await self.loop.create_server(self.app, self.host, self.port, backlog=self.backlog)
            self.port = self._server.sockets[0].getsockname()[1]
            return
        # Quiet access log: fault tests make hundreds of requests.
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=self.backlog)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the port the OS chose for port 0

    def stop(self) -> None:
        if self._server is not None:
            self.loop.call_soon_threadsafe(self._server.close)
            self._server = None
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=30)
            self._runner = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
