"""The live server: the page, its JSON, `/metrics` and the store's images, on 127.0.0.1 by default.

aiohttp on an event loop of its own, in a daemon thread, not on the run's loop: emit (one long
synchronous pass), the gates' reader and the Ray driver all block the main thread for minutes
at a time, and the page must keep answering through them; and the executor's loop then carries
nothing of ours but the walker's two O(1) calls per sample. Each request reads `LiveState`
under its lock; the GIL it takes is what `benchmarks/live_overhead.py` measures.

    GET /             the page (static HTML, its script and style: no CDN, nothing from elsewhere)
    GET /api/state    what the page shows, as JSON (`LiveState.snapshot`)
    GET /metrics      Prometheus text format (`metrics.py`)
    GET /images/<sha256>.<png|jpeg|webp>   an image from the store, by its content hash

Prompts, thinkings and images are the data being built: the server listens on 127.0.0.1 unless
`run.live_host` says otherwise (with a warning). Nothing secret is on the page: backends' summaries
and identities hold no keys. Every response forbids scripts from anywhere but this server.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from curation.core.config import ConfigError
from curation.monitor.state import LiveState

STATIC = Path(__file__).resolve().parent / "static"
IMAGE_NAME = re.compile(r"^([0-9a-f]{64})\.(png|jpeg|webp)$")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


async def _no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)


class LiveServerError(ConfigError):
    """The live server cannot listen where `run.live_host`/`run.live_port` say."""


class LiveServer:
    def __init__(self, state: LiveState, registry: CollectorRegistry, image_bytes: Callable[[str, str], bytes],
                 *, host: str = "127.0.0.1", port: int = 0):
        self.state = state
        self.registry = registry
        self.image_bytes = image_bytes  # (sha256, format) -> bytes; raises OSError when absent
        self.host, self.port = host, port
        self.final_scraped = threading.Event()  # /metrics served after emit's final counts were in
        self.requests = 0  # answered, of every kind
        self.cpu_s = 0.0  # CPU time of the server's thread, once stopped: all it took from the run
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._static = {name: (STATIC / name).read_bytes() for name in ("index.html", "live.js", "live.css")}

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def local_only(self) -> bool:
        return self.host in LOCAL_HOSTS

    # ------------------------------------------------------------------ life

    def start(self) -> str:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except OSError as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                loop.close()
                # Everything the server did ran on this thread, so its CPU time bounds what it took
                # from the run (the GIL included): benchmarks/live_overhead.py reads it from the log.
                self.cpu_s = time.thread_time()

        self._thread = threading.Thread(target=serve, name="live-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise LiveServerError(f"the live page cannot listen on {self.host}:{self.port}: "
                                  f"{failure[0].strerror or failure[0]} (set run.live_port to a free port, or 0)")
        return self.url

    async def _listen(self) -> None:
        app = web.Application(middlewares=[self._count])
        app.router.add_get("/", self._static_handler("index.html", "text/html"))
        app.router.add_get("/live.js", self._static_handler("live.js", "text/javascript"))
        app.router.add_get("/live.css", self._static_handler("live.css", "text/css"))
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/images/{name}", self._image)
        app.router.add_get("/favicon.ico", _no_content)  # browsers ask; nothing to show
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.port = self._runner.addresses[0][1]  # the port bound (port 0: any free one)

    def linger(self, seconds: float) -> bool:
        """After emit: serve until /metrics has been scraped with the final counts, at most `seconds`."""
        return self.final_scraped.wait(timeout=max(0.0, seconds))

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    # ------------------------------------------------------------------ handlers

    @web.middleware
    async def _count(self, request: web.Request, handler):
        self.requests += 1
        return await handler(request)

    def _static_handler(self, name: str, content_type: str):
        body = self._static[name]

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type=content_type, charset="utf-8",
                                headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})
        return handler

    async def _state(self, request: web.Request) -> web.Response:
        body = json.dumps(self.state.snapshot(), ensure_ascii=False, default=str)
        return web.Response(text=body, content_type="application/json",
                            headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP})

    async def _metrics(self, request: web.Request) -> web.Response:
        final = self.state.final is not None  # read before: the scrape then carries the final counts
        body = generate_latest(self.registry)
        if final:
            self.final_scraped.set()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})

    async def _image(self, request: web.Request) -> web.Response:
        match = IMAGE_NAME.match(request.match_info["name"])
        if match is None:
            raise web.HTTPNotFound()
        sha, fmt = match.groups()
        try:
            data = self.image_bytes(sha, fmt)
        except OSError:
            raise web.HTTPNotFound() from None
        # Content-addressed: the bytes behind a name never change.
        return web.Response(body=data, content_type=IMAGE_TYPES[fmt],
                            headers={"Cache-Control": "public, max-age=31536000, immutable",
                                     "Content-Security-Policy": CSP})
