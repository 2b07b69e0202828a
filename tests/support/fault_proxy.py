"""A fault-injecting HTTP proxy for testing any HTTP backend against a real (or fake) server.

    plan = per_body([Status(429, retry_after=0.2), Status(503), Reset()])   # each distinct request
    with FaultProxy("http://127.0.0.1:8000", plan) as proxy:                # fails 3 times, then passes
        ... point the backend at proxy.url ...
    proxy.log   # [(Call, fault name or "pass"), ...]

The proxy forwards every request to `upstream` unchanged, except when the plan returns a fault for
it. A plan is a function `Call -> Fault | None`; `Call.attempt` counts earlier requests with the
same method, path and body, so a plan can say "the first two attempts of each request fail" and
the outcome stays the same whatever order concurrent requests arrive in.

Faults: `Status(code, retry_after=None, error=None)` answers with that status (and that error object); `Hang(seconds)` answers only
after `seconds` (longer than the client's time-out); `Reset()` drops the connection without an
answer; `Garbled()` answers bytes that are not HTTP; `MalformedJSON()` answers 200 with a cut-off
JSON body; `Rewrite(name, fn)` forwards and
then changes the upstream JSON answer with `fn` — `empty_content()` and `finish_length()` are two.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web

from tests.support.aio_server import ServerThread

Forward = Callable[[], Awaitable[tuple[int, bytes]]]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes
    key: str  # sha256 of method, path and body: "the same request"
    attempt: int  # how many times this same request came before (0 = first)

    def json(self) -> dict:
        return json.loads(self.body) if self.body else {}


class Fault:
    name = "fault"

    async def respond(self, request: web.Request, forward: Forward) -> web.StreamResponse:
        raise NotImplementedError


@dataclass(frozen=True)
class Status(Fault):
    code: int
    retry_after: float | None = None
    #: The body's error object (default `{"message": "injected <code>"}`); vLLM's has message, type, param, code.
    error: dict | None = None

    @property
    def name(self) -> str:
        return f"status_{self.code}"

    async def respond(self, request, forward):
        headers = {"Retry-After": f"{self.retry_after:g}"} if self.retry_after is not None else {}
        error = self.error if self.error is not None else {"message": f"injected {self.code}"}
        return web.json_response({"error": error}, status=self.code, headers=headers)


@dataclass(frozen=True)
class Hang(Fault):
    seconds: float
    name = "hang"

    async def respond(self, request, forward):
        await asyncio.sleep(self.seconds)  # the client has given up by now
        return web.json_response({"error": {"message": "too late"}}, status=504)


@dataclass(frozen=True)
class Reset(Fault):
    name = "reset"

    async def respond(self, request, forward):
        request.transport.abort()  # RST-style close: no status line ever reaches the client
        raise asyncio.CancelledError


@dataclass(frozen=True)
class Garbled(Fault):
    name = "garbled"

    async def respond(self, request, forward):
        request.transport.write(b"HTPT/9.9 OK maybe\r\n\r\n{}")  # not an HTTP status line
        request.transport.close()
        raise asyncio.CancelledError


@dataclass(frozen=True)
class MalformedJSON(Fault):
    name = "malformed_json"

    async def respond(self, request, forward):
        return web.Response(body=b'{"id": "chatcmpl-cut", "choices": [{"index": 0, "mess', status=200,
                            content_type="application/json")


@dataclass(frozen=True)
class Rewrite(Fault):
    label: str
    change: Callable[[dict], dict]

    @property
    def name(self) -> str:
        return self.label

    async def respond(self, request, forward):
        status, body = await forward()
        if status != 200:
            return web.Response(body=body, status=status, content_type="application/json")
        return web.json_response(self.change(json.loads(body)))


def empty_content() -> Rewrite:
    def change(data: dict) -> dict:
        data["choices"][0]["message"]["content"] = ""
        return data
    return Rewrite("empty_content", change)


def finish_length() -> Rewrite:
    def change(data: dict) -> dict:
        data["choices"][0]["finish_reason"] = "length"
        return data
    return Rewrite("finish_length", change)


# ----------------------------------------------------------------------------- plans


def per_body(faults: list[Fault], *, when: Callable[[Call], bool] = lambda call: True,
             path: str = "/chat/completions") -> Callable[[Call], Fault | None]:
    """Attempt i of each matching request to `path` gets faults[i]; later attempts pass through."""
    def plan(call: Call) -> Fault | None:
        if call.path.endswith(path) and when(call) and call.attempt < len(faults):
            return faults[call.attempt]
        return None
    return plan


def at_rate(rate: float, faults: list[Fault], *, path: str = "/chat/completions",
            seed: str = "") -> Callable[[Call], Fault | None]:
    """Each attempt of each matching request fails with probability `rate`, with one of `faults`.

    Drawn from a hash of the request and its attempt number, not from a random generator: a run
    sees the same faults whatever order its concurrent requests arrive in, and a request that
    failed is not doomed to fail again (its next attempt draws anew).
    """
    def plan(call: Call) -> Fault | None:
        if not call.path.endswith(path):
            return None
        draw = int(hashlib.sha256(f"{seed}:{call.key}:{call.attempt}".encode()).hexdigest()[:12], 16)
        if draw % 10_000 >= rate * 10_000:
            return None
        return faults[(draw // 10_000) % len(faults)]
    return plan


def one_in(n: int, faults: list[Fault], *, path: str = "/chat/completions") -> Callable[[Call], Fault | None]:
    """Every `n`-th distinct request, in arrival order, fails its first attempt with the next of `faults`.

    For bodies that differ from session to session (a model named by its temporary folder), where
    a hash-drawn plan could happen to fault nothing: this one faults exactly one request in `n`.
    """
    turns: dict[str, int] = {}
    lock = threading.Lock()

    def plan(call: Call) -> Fault | None:
        if not call.path.endswith(path) or call.attempt:
            return None
        with lock:
            turn = turns.setdefault(call.key, len(turns))
        return faults[(turn // n) % len(faults)] if turn % n == n - 1 else None
    return plan


def bucket(call: Call, buckets: int) -> int:
    """A request's bucket, stable across runs and orderings (for 'some requests fail')."""
    return int(call.key[:8], 16) % buckets


# ----------------------------------------------------------------------------- the proxy


class FaultProxy:
    def __init__(self, upstream: str, plan: Callable[[Call], Fault | None]):
        self.upstream = upstream.rstrip("/")
        self.plan = plan
        self.log: list[tuple[Call, str]] = []
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._session: aiohttp.ClientSession | None = None
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_cleanup.append(self._close_session)
        self._server = ServerThread(app)

    @property
    def url(self) -> str:
        return self._server.url

    def faults(self) -> list[str]:
        """Names of the faults injected so far, in order."""
        return [name for _, name in self.log if name != "pass"]

    def __enter__(self) -> "FaultProxy":
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()

    async def _close_session(self, app) -> None:
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        key = hashlib.sha256(request.method.encode() + b" " + request.path_qs.encode() + b"\n" + body).hexdigest()
        with self._lock:
            attempt = self._seen.get(key, 0)
            self._seen[key] = attempt + 1
        call = Call(request.method, request.path_qs, body, key, attempt)
        fault = self.plan(call)
        with self._lock:
            self.log.append((call, fault.name if fault else "pass"))

        async def forward() -> tuple[int, bytes]:
            if self._session is None:
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
            headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
            async with self._session.request(request.method, self.upstream + request.path_qs, data=body,
                                             headers=headers) as upstream:
                return upstream.status, await upstream.read()

        if fault is not None:
            return await fault.respond(request, forward)
        status, data = await forward()
        return web.Response(body=data, status=status, content_type="application/json")


class DiesAfter:
    """A plan under which the server answers `answers` chat requests, then nothing at all (not even
    GET /models): its process is gone, every connection reset."""

    def __init__(self, answers: int):
        self.answers, self.dead = answers, False

    def __call__(self, call: Call):
        if self.dead:
            return Reset()
        if call.path.endswith("/chat/completions") and call.attempt == 0:
            self.answers -= 1
            if self.answers < 0:
                self.dead = True
                return Reset()
        return None
