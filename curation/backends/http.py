"""The one HTTP layer of every HTTP backend: a pooled aiohttp session, time-outs, retries.

    client = HttpClient(HttpSettings(base_url="http://host:8000/v1", api_key_env="VLLM_API_KEY"),
                        max_connections=backend.concurrency)
    data = await client.post_json("/chat/completions", payload)   # a dict, or RequestFailed
    await client.aclose()

Contract (stable; the image-generator backends rely on it):
- One `aiohttp.ClientSession` per client, created on first use inside the running event loop, with
  at most `max_connections` pooled keep-alive connections (give it the backend's `concurrency`).
- Every attempt has `timeout_s` in total (connect, send, wait, read).
- Retried, with exponential backoff and jitter: 429 (waiting at least its `Retry-After`), 408, any
  5xx, time-outs, refused/reset/dropped connections, and bodies that are not a JSON object.
  Not retried: every other 4xx — the request itself is wrong and would fail again.
- After the last attempt, `RequestFailed(reason, detail, transient)` is raised; a backend turns it
  into `Reject(stage, reason, detail, transient)`. `transient` is True for the retried kinds, so
  the next run tries those samples again. `RequestStats`, when passed, gets attempts and latency.
- When `give_up_after` requests in a row have failed that way, `ServerGone` (a
  `BackendUnavailable`) is raised instead: the run stops, rather than rejecting every remaining
  sample one backoff at a time, and the same command resumes it later.
- `DataURI` values in a payload (images) are written into the JSON body without re-escaping.
- The API key is read once from the environment variable named by `api_key_env` and sent as a
  bearer token. It is never logged, never part of an error message, never in a backend identity.

Why aiohttp, and not the `openai` SDK or httpx: measured on the project's 2-core machine (quiet)
against a 0.2 s fixed-latency endpoint, 256 requests in flight, one image part each
(`python benchmarks/teacher_throughput.py --compare-clients`):

    client                      share of the ideal rate   client CPU per request
    curation.backends.http (this)        0.89                      0.54 ms
    aiohttp, bare               0.86                      0.49 ms
    httpx2 AsyncClient          0.24                      3.2 ms
    openai SDK, default         0.13                      6.0 ms
    openai SDK, aiohttp         0.22                      3.5 ms

The SDK's cost is its request transformation and response models, not only its transport. The
first attempt runs outside tenacity, whose bookkeeping costs ~50-80 µs a call: retries are rare,
so tenacity only runs once a first attempt has failed. uvloop was tried and did not help: the
client's time goes into aiohttp's request machinery, not the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import os
import random
import secrets
import time
import dataclasses
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from yarl import URL

from curation.backends.base import BackendUnavailable


@dataclass(frozen=True)
class HttpSettings:
    base_url: str  # e.g. "http://host:8000/v1"; request paths are appended to it
    timeout_s: float = 600.0  # per attempt, everything included
    max_attempts: int = 5  # 1 = no retry
    backoff_initial_s: float = 1.0  # the wait before the second attempt (before jitter)
    backoff_max_s: float = 60.0  # the longest wait between attempts (a Retry-After may ask for more)
    api_key_env: str | None = None  # the NAME of the environment variable holding the key
    give_up_after: int | None = None  # this many requests in a row failing for good: ServerGone

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.give_up_after is not None and self.give_up_after < 1:
            raise ValueError(f"give_up_after must be at least 1 (or null), not {self.give_up_after}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {self.timeout_s}")


class RequestFailed(Exception):
    """A request that did not succeed after its last attempt (or that must not be retried).

    `reason` is one of: timeout, connection_error, rate_limited, server_error, malformed_response
    (all transient: retried, and tried again by the next run), or http_error (another 4xx: not
    retried, not transient). `status` is the last HTTP status, when there was a response.
    """

    def __init__(self, reason: str, detail: str, transient: bool, *, status: int | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.transient = transient
        self.status = status


class ServerGone(BackendUnavailable):
    """`give_up_after` requests in a row failed after all their attempts: the server is gone.

    Raised instead of yet another `RequestFailed`, so the run stops (a broken run) rather than
    rejecting every remaining sample one backoff at a time; finished results stay in the store,
    and the same command resumes once the server is back.
    """


class ApiKeyMissing(RuntimeError):
    """`api_key_env` names an environment variable that is not set."""


@dataclass
class RequestStats:
    """Filled by `post_json`/`get_json` when passed: for per-row accounting."""

    attempts: int = 0
    latency_s: float = 0.0  # the whole call, waits between attempts included


class _Retryable(Exception):
    def __init__(self, reason: str, detail: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        self.status = status


_DETAIL_CHARS = 300  # how much of an error body goes into a reject's detail


class DataURI:
    """A file (an image) as a `data:` URI string inside a JSON payload, for `post_json`.

    Base64 needs no JSON escaping, yet the stdlib encoder escapes every string character by
    character (~4 µs per KB: 1 ms for a 256 KB image); `dumps` writes these bytes in unchanged.
    """

    __slots__ = ("text",)

    def __init__(self, mime: str, data: bytes):
        self.text = b"data:" + mime.encode("ascii") + b";base64," + base64.b64encode(data)

    def __str__(self) -> str:
        return self.text.decode("ascii")


# Marks where a DataURI goes. Drawn once per process (os.urandom can cost 100+ µs a call on a busy
# VM); secret, so no caller text can contain it except by a 2^-64 accident.
_NONCE = secrets.token_hex(8)


def dumps(payload: Any) -> bytes:
    """Compact UTF-8 JSON of `payload`, with `DataURI` values spliced in as JSON strings."""
    pieces: list[bytes] = []
    nonce = _NONCE

    def splice(value: Any) -> str:
        if isinstance(value, DataURI):
            pieces.append(value.text)
            return f"{nonce}:{len(pieces) - 1}"
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=splice).encode()
    if not pieces:
        return body
    parts = body.split(f'"{nonce}:'.encode())
    out = [parts[0]]
    for part in parts[1:]:
        index, rest = part.split(b'"', 1)
        out += (b'"', pieces[int(index)], b'"', rest)
    return b"".join(out)


def read_api_key(env_name: str | None) -> str | None:
    if not env_name:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise ApiKeyMissing(f"the environment variable {env_name} (named by api_key_env) is not set; "
                            f"export {env_name}=<your key>, or set api_key_env to null for a server without a key")
    return key


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    def __init__(self, settings: HttpSettings, *, max_connections: int = 64):
        self.settings = settings
        self.max_connections = max(1, int(max_connections))
        self._base = settings.base_url.rstrip("/")
        base = URL(self._base)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"base_url {settings.base_url!r} must look like http://host:port/v1")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = read_api_key(settings.api_key_env)
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._failures_in_a_row = 0

    def __repr__(self) -> str:  # never the headers: they hold the key
        return f"HttpClient({self._base!r})"

    # ------------------------------------------------------------------------- public

    async def post_json(self, path: str, payload: dict[str, Any], *, stats: RequestStats | None = None) -> dict:
        """POST `payload` as JSON to base_url + path; the response's JSON object.

        `payload` may hold `DataURI` values (images): they are written into the body verbatim.
        """
        body = dumps(payload)  # encoded once: every retry sends the same bytes
        return await self._call("POST", path, body, stats)

    async def get_json(self, path: str, *, stats: RequestStats | None = None) -> dict:
        return await self._call("GET", path, None, stats)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------------- internals

    def _url(self, path: str) -> URL:
        url = self._urls.get(path)
        if url is None:  # parsed once per path, not per request
            url = self._urls[path] = URL(self._base + "/" + path.lstrip("/"))
        return url

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                cookie_jar=aiohttp.DummyCookieJar(),  # APIs need no cookies; the jar costs CPU per request
            )
        return self._session

    async def _call(self, method: str, path: str, body: bytes | None, stats: RequestStats | None) -> dict:
        started = time.perf_counter()
        url = self._url(path)
        attempts = 1
        try:
            # The first attempt runs outside tenacity: it is the hot path, and almost always the last.
            data = await self._attempt(method, url, body)
            self._failures_in_a_row = 0
            return data
        except _Retryable as failure:
            last = failure
            if self.settings.max_attempts == 1:
                raise self._failed(last, attempts, method, path) from None
        finally:
            if stats is not None:
                stats.attempts, stats.latency_s = attempts, time.perf_counter() - started

        await asyncio.sleep(self._delay(1, last))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_attempts - 1),
            wait=lambda state: self._delay(state.attempt_number + 1, state.outcome.exception()),
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    data = await self._attempt(method, url, body)
                    self._failures_in_a_row = 0
                    return data
        except _Retryable as failure:
            raise self._failed(failure, attempts, method, path) from None
        finally:
            if stats is not None:
                stats.attempts, stats.latency_s = attempts, time.perf_counter() - started
        raise AssertionError("unreachable: tenacity either returns, or reraises the last failure")

    async def _attempt(self, method: str, url: URL, body: bytes | None) -> dict:
        try:
            async with self._get_session().request(method, url, data=body) as response:
                data = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After") if status in (429, 503) else None
        except asyncio.TimeoutError:
            raise _Retryable("timeout", f"no complete answer within {self.settings.timeout_s:g} s") from None
        except aiohttp.ClientResponseError as exc:  # not even a valid HTTP answer (a garbled status line …)
            raise _Retryable("malformed_response", f"{type(exc).__name__}: {exc}") from None
        except aiohttp.ClientError as exc:  # refused, reset, dropped mid-body, DNS …
            raise _Retryable("connection_error", f"{type(exc).__name__}: {exc}") from None

        if status >= 400:
            excerpt = data[:_DETAIL_CHARS].decode("utf-8", "replace")
            detail = f"HTTP {status}: {excerpt}"
            if status == 429:
                raise _Retryable("rate_limited", detail, retry_after_seconds(retry_after), status)
            if status >= 500 or status == 408:
                raise _Retryable("server_error", detail, retry_after_seconds(retry_after), status)
            raise RequestFailed("http_error", f"{method} {url.path}: {detail} (not retried)", transient=False,
                                status=status)
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise _Retryable("malformed_response", f"the body is not JSON ({exc}): "
                                                   f"{data[:120].decode('utf-8', 'replace')!r}") from None
        if not isinstance(parsed, dict):
            raise _Retryable("malformed_response", f"the body is JSON but not an object: {type(parsed).__name__}")
        return parsed

    def _delay(self, failures: int, failure: BaseException | None) -> float:
        """Wait before the next attempt: exponential, half of it jittered, at least any Retry-After."""
        s = self.settings
        base = min(s.backoff_max_s, s.backoff_initial_s * 2 ** (failures - 1))
        delay = base / 2 + random.uniform(0, base / 2)  # jitter keeps many clients from retrying in step
        retry_after = getattr(failure, "retry_after", None)
        return max(delay, retry_after) if retry_after is not None else delay

    def _failed(self, failure: _Retryable, attempts: int, method: str, path: str) -> RequestFailed:
        plural = "s" if attempts != 1 else ""
        detail = f"{method} {path}: {failure.detail} ({attempts} attempt{plural})"
        self._failures_in_a_row += 1
        limit = self.settings.give_up_after
        if limit is not None and self._failures_in_a_row >= limit:
            raise ServerGone(f"the last {self._failures_in_a_row} requests to {self._base} all failed after "
                             f"{attempts} attempt{plural} each (last: {failure.reason}, {detail}): check the server; "
                             "finished results are kept, and the same command resumes the run")
        return RequestFailed(failure.reason, detail, transient=True, status=failure.status)


async def served_models(settings: HttpSettings, *, group: str, serve_hint: str, timeout_s: float) -> list[str]:
    """`GET /models` once, with one short attempt: the ids the server serves.

    The start-up check of every OpenAI-compatible backend. A wrong URL must fail in seconds, not
    after the run's retry budget, and with one sentence that names the knob to fix (`group` is
    the backend's config group, `serve_hint` how to start a server).
    """
    client = HttpClient(dataclasses.replace(settings, max_attempts=1, timeout_s=timeout_s), max_connections=1)
    try:
        listing = await client.get_json("/models")
    except RequestFailed as exc:
        raise BackendUnavailable(_probe_failure(exc, settings, group, serve_hint, timeout_s)) from None
    finally:
        await client.aclose()
    return [m["id"] for m in listing.get("data", []) if isinstance(m, dict) and isinstance(m.get("id"), str)]


def _probe_failure(exc: RequestFailed, settings: HttpSettings, group: str, serve_hint: str, timeout_s: float) -> str:
    base_url = settings.base_url.rstrip("/")
    if exc.reason == "connection_error":
        return f"no server answers at {base_url} ({exc.detail}): start one ({serve_hint}) or fix {group}.base_url"
    if exc.reason == "timeout":
        return (f"the server at {base_url} did not answer GET /models within {timeout_s:g} s: "
                f"check that it has finished loading, or raise {group}.check_timeout_s")
    if exc.status in (401, 403):
        key = settings.api_key_env
        hint = (f"set the environment variable {key} to the server's key" if key else
                f"name the environment variable holding the key in {group}.api_key_env")
        return f"the server at {base_url} refused the request (HTTP {exc.status}): {hint}"
    if exc.status == 404:
        return (f"{base_url}/models does not exist (HTTP 404): {group}.base_url must be the API root "
                "of an OpenAI-compatible server, usually ending in /v1")
    return f"the server at {base_url} is not usable as an OpenAI-compatible API: GET /models gave {exc}"

