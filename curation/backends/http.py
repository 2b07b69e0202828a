"""The one HTTP layer of every HTTP backend: a pooled aiohttp session, time-outs, retries, failure classes.

    client = HttpClient(HttpSettings(base_url="http://host:8000/v1", api_key_env="VLLM_API_KEY"),
                        max_connections=backend.concurrency)
    data = await client.post_json("/chat/completions", payload)   # a dict, RequestFailed or ServerRefused
    await client.aclose()

Contract (stable; the image-generator backends rely on it):
- One `aiohttp.ClientSession` per client, created on first use inside the running event loop, with
  at most `max_connections` pooled keep-alive connections (give it the backend's `concurrency`).
- Every attempt has `timeout_s` in total (connect, send, wait, read).
- Every failure falls in one of three classes, decided from the status code and the structured
  fields of the error body (OpenAI's and vLLM's `{"error": {"message", "type", "param", "code"}}`,
  vLLM's older flat `{"object": "error", ...}`), never from the wording of a message:
  - **transient**: 429 (waiting at least its `Retry-After`), 408, any 5xx, time-outs,
    refused/reset/dropped connections, bodies that are not a JSON object. Retried with exponential
    backoff and jitter; after the last attempt `RequestFailed(reason, detail, transient=True)`, which
    a backend turns into a transient `Reject` that the next run tries again.
  - **sample-specific**: the server refuses this request for what it holds: its prompt and images
    do not fit the context (vLLM: 400 with `param` `input_tokens` or `max_tokens`; OpenAI: `code`
    `context_length_exceeded`; any 413) → `request_too_long`; a safety system refuses it (OpenAI:
    `code` `content_policy_violation` or `moderation_blocked`) → `content_policy`. Not retried;
    `RequestFailed(reason, detail, transient=False)`, a reject that is kept.
  - **configuration**: every other 4xx — a refused key (401/403), a wrong path or model (404), a
    parameter the server does not take (400/422), an exhausted quota (429 `insufficient_quota`).
    Every request would fail alike, so `ServerRefused` (a `BackendFailed`) is raised: the run stops
    with one sentence that quotes the server's message, and nothing is stored for the request.
- When `give_up_after` requests in a row have failed transiently after all their attempts,
  `ServerGone` (a `BackendFailed`) is raised instead: the run stops, rather than rejecting every
  remaining sample one backoff at a time, and the same command resumes it later.
- Per-run accounting (requests, attempts, seconds) is kept on the client (`client.accounting`) for the
  backends' `summary()`, which the manifest records; nothing per request reaches a row's lineage.
- `DataURI` values in a payload (images) are written into the JSON body without re-escaping.
- The API key is read once from the environment variable named by `api_key_env` and sent as a
  bearer token. It is never logged, never part of an error message, never in a backend identity.

Why aiohttp, and not the `openai` SDK or httpx: measured on the project's 2-core machine (quiet)
against a 0.2 s fixed-latency endpoint, 256 requests in flight, one image part each
(`python benchmarks/teacher_throughput.py --compare-clients`):

    client                      share of the ideal rate   client CPU per request
    curation.backends.http               0.89                      0.54 ms   (first attempt outside tenacity)
    aiohttp, bare               0.86                      0.49 ms
    httpx2 AsyncClient          0.24                      3.2 ms
    openai SDK, default         0.13                      6.0 ms
    openai SDK, aiohttp         0.22                      3.5 ms

The SDK's cost is its request transformation and response models, not only its transport.
uvloop was tried and did not help: the client's time goes into aiohttp's request machinery, not
the event loop.

Every attempt, the first included, runs in one tenacity retry loop. Until this version the first
attempt ran outside tenacity for speed; measured against that, interleaved, on the project's
2-core machine while other work ran on it, 4,096 requests at 256 in flight
(`python benchmarks/teacher_throughput.py --compare-clients --clients curation.backends.http`):

                                      client CPU per request            share of the ideal rate
                                      load 8-11 (4 runs)  load ~3.7 (2)  load ~3.7 (2 runs)
    first attempt outside tenacity    0.174-0.191 ms      0.188-0.244 ms  0.92-0.94
    one tenacity loop (this)          0.303-0.343 ms      0.306-0.308 ms  0.88 (0.43 in a run disturbed by other work)

The loop costs ~0.13 ms of client CPU per request (setting up `AsyncRetrying` and its attempt
context per call). One client core then tops out near 3,000 requests/s rather than 5,000; a
Qwen2.5-VL server answers tens per second, so the difference never shows in a run, and the one
loop is kept for its simpler code (one place decides what is retried, one path to test).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email.utils
import json
import os
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from yarl import URL

from curation.backends.base import BackendFailed, BackendUnavailable


@dataclass(frozen=True)
class HttpSettings:
    base_url: str  # e.g. "http://host:8000/v1"; request paths are appended to it
    timeout_s: float = 600.0  # per attempt, everything included
    max_attempts: int = 5  # 1 = no retry
    backoff_initial_s: float = 1.0  # the wait before the second attempt (before jitter)
    backoff_max_s: float = 60.0  # the longest wait between attempts (a Retry-After may ask for more)
    api_key_env: str | None = None  # the NAME of the environment variable holding the key
    give_up_after: int | None = None  # this many requests in a row failing for good: ServerGone
    # After a request fails for good (transient, all attempts spent), `GET probe_path` once within
    # `probe_timeout_s`: no HTTP answer (or a 5xx) means the server is gone, and the run stops
    # (ServerGone) instead of rejecting what is left. None: no probe (give_up_after alone decides).
    probe_path: str | None = "/models"
    probe_timeout_s: float = 15.0

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.give_up_after is not None and self.give_up_after < 1:
            raise ValueError(f"give_up_after must be at least 1 (or null), not {self.give_up_after}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {self.timeout_s}")
        if self.probe_timeout_s <= 0:
            raise ValueError(f"probe_timeout_s must be positive, not {self.probe_timeout_s}")


@dataclass(frozen=True)
class ServerError:
    """An HTTP error answer: its status and the structured fields of its body, when it has them."""

    status: int
    message: str  # the server's own words (or the start of a body that is not the usual shape)
    type: str | None = None
    param: str | None = None
    code: str | int | None = None

    @classmethod
    def parse(cls, status: int, body: bytes) -> "ServerError":
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            # OpenAI and current vLLM nest the fields under "error"; vLLM before 0.11 put them at the
            # top level ({"object": "error", ...}); FastAPI's own errors (a 404 route, a 422) say "detail".
            fields = doc["error"] if isinstance(doc.get("error"), dict) else doc
            message = fields.get("message", fields.get("detail", doc.get("detail")))
            if message is not None:
                def text(value: Any) -> str | None:
                    return value if isinstance(value, str) else None

                code = fields.get("code")
                return cls(status, message if isinstance(message, str) else json.dumps(message)[:_DETAIL_CHARS],
                           text(fields.get("type")), text(fields.get("param")),
                           code if isinstance(code, (str, int)) and not isinstance(code, bool) else None)
        return cls(status, body[:_DETAIL_CHARS].decode("utf-8", "replace"))

    def describe(self) -> str:
        """`HTTP 400 (BadRequestError, param input_tokens): <message>` — for rejects and errors."""
        fields = ", ".join(f"{name} {value}" if name != "type" else str(value)
                           for name, value in (("type", self.type), ("param", self.param), ("code", self.code))
                           if value is not None and not (name == "code" and value == self.status))
        message = " ".join(self.message[:_DETAIL_CHARS].split())  # one line, whatever the server wrote
        return f"HTTP {self.status}{f' ({fields})' if fields else ''}: {message}"


# Sample-specific refusals, by the structured field that says so. vLLM's OpenAI server (0.32) answers
# a prompt whose *text* is over --max-model-len with 400 and param "input_tokens" (or "input_text");
# OpenAI with code "context_length_exceeded".
TOO_LONG_PARAMS = frozenset({"input_tokens", "input_text"})
TOO_LONG_CODES = frozenset({"context_length_exceeded"})
POLICY_CODES = frozenset({"content_policy_violation", "moderation_blocked"})
# 400s whose fields do not say whose fault it is. vLLM answers a prompt over --max-model-len once its
# images are counted (the engine's input processor) with param null, like any other ValueError;
# `max_tokens` is named when max_tokens > max_model_len (vLLM 0.32: a setting) or, in older vLLM,
# when this prompt + max_tokens did not fit (this sample). `AmbiguousRefusal` lets the caller decide.
AMBIGUOUS_400_PARAMS = frozenset({None, "max_tokens", "max_completion_tokens"})
# 429s that waiting does not cure: the account's quota is spent (OpenAI).
NOT_TRANSIENT_429_CODES = frozenset({"insufficient_quota"})


def sample_refusal(error: ServerError) -> str | None:
    """The reject reason when the server's own fields say it refuses this request for what it holds, else None."""
    if error.status == 413 or error.code in TOO_LONG_CODES or (error.status == 400 and error.param in TOO_LONG_PARAMS):
        return "request_too_long"
    if error.status == 400 and error.code in POLICY_CODES:
        return "content_policy"
    return None


def ambiguous_refusal(error: ServerError) -> bool:
    """A 400 that names no field of the request, or only its output budget: this sample or the setting?"""
    return error.status == 400 and error.param in AMBIGUOUS_400_PARAMS


def transient_reason(error: ServerError) -> str | None:
    """`rate_limited` or `server_error` when waiting and retrying may help, else None."""
    if error.status == 429:
        return None if error.code in NOT_TRANSIENT_429_CODES else "rate_limited"
    if error.status >= 500 or error.status == 408:
        return "server_error"
    return None


class RequestFailed(Exception):
    """A request that failed for this sample: after its last attempt (transient), or for good.

    `reason` is one of: timeout, connection_error, rate_limited, server_error, malformed_response
    (transient: retried, and tried again by the next run), or request_too_long, content_policy
    (sample-specific: not retried, kept). `status` is the last HTTP status, when there was one.
    """

    def __init__(self, reason: str, detail: str, transient: bool, *, status: int | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.transient = transient
        self.status = status


class ServerRefused(BackendFailed):
    """The server refuses requests as this run makes them (configuration): the run stops.

    `error` holds the status and the server's structured fields, for callers that say more
    (the start-up probe turns a 401 into "set the key variable").
    """

    def __init__(self, message: str, error: ServerError):
        super().__init__(message)
        self.error = error


class AmbiguousRefusal(ServerRefused):
    """A 400 whose structured fields do not say whether this request or the configuration is at fault.

    A `ServerRefused`, so a caller that cannot tell stops the run (the safe side: nothing is stored).
    The teacher decides from what it can measure: the prompt's size against the server's context
    (vLLM's `/tokenize`), and whether any request of this run has been answered.
    """


class ServerGone(BackendFailed):
    """The server stopped answering: the run stops, however few requests are left.

    Raised when a request has failed transiently after all its attempts and the server then does
    not answer a probe (`probe_path`) within `probe_timeout_s`, or when `give_up_after` requests in
    a row have failed for good. Raised instead of one more `RequestFailed`, so the run stops (a
    broken run) rather than rejecting the remaining samples as transient failures and publishing
    a dataset without them; finished results stay in the store, and the same command resumes once
    the server is back.
    """


class ApiKeyMissing(RuntimeError):
    """`api_key_env` names an environment variable that is not set."""


@dataclass
class RequestStats:
    """Filled by `post_json`/`get_json` when passed: one call's attempts and seconds (tests, benchmarks)."""

    attempts: int = 0
    latency_s: float = 0.0  # the whole call, waits between attempts included


@dataclass
class HttpAccounting:
    """What a client did over a run, for its backend's `summary()` (the manifest's run.backends)."""

    requests: int = 0  # calls made (each one or more attempts)
    answered: int = 0  # calls that got their answer (2xx)
    attempts: int = 0
    failed: int = 0  # calls that failed transiently after their last attempt
    refused: int = 0  # calls the server refused for their sample
    seconds: float = 0.0  # summed over calls, waits between attempts included

    def as_dict(self) -> dict[str, Any]:
        return {"http_requests": self.requests, "http_answered": self.answered, "http_attempts": self.attempts,
                "http_retries": self.attempts - self.requests, "http_failed": self.failed,
                "http_refused": self.refused,
                "mean_latency_s": round(self.seconds / self.requests, 3) if self.requests else None}


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
        self.accounting = HttpAccounting()

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
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=lambda state: self._delay(state.attempt_number, state.outcome.exception()),
            retry=retry_if_exception_type(_Retryable),  # RequestFailed and ServerRefused end the call at once
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    data = await self._attempt(method, url, body)
        except _Retryable as failure:
            self.accounting.failed += 1
            raise await self._failed(failure, attempts, method, path) from None
        except RequestFailed:
            self.accounting.refused += 1
            self._failures_in_a_row = 0  # the server answered: it is there
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.accounting.requests += 1
            self.accounting.attempts += attempts
            self.accounting.seconds += elapsed
            if stats is not None:
                stats.attempts, stats.latency_s = attempts, elapsed
        self._failures_in_a_row = 0
        self.accounting.answered += 1
        return data

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
            error = ServerError.parse(status, data)
            reason = transient_reason(error)
            if reason is not None:
                raise _Retryable(reason, error.describe(), retry_after_seconds(retry_after), status)
            reason = sample_refusal(error)
            if reason is not None:
                raise RequestFailed(reason, f"{method} {url.path}: {error.describe()} (not retried)", transient=False,
                                    status=status)
            refused = AmbiguousRefusal if ambiguous_refusal(error) else ServerRefused
            raise refused(f"the server at {self._base} refused {method} {url.path} with {error.describe()}; "
                                "every request of this run would fail alike, so it stops: fix the configuration "
                                "or the server and run the same command again (nothing was stored for the "
                                "refused request)", error)
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

    async def _failed(self, failure: _Retryable, attempts: int, method: str, path: str) -> RequestFailed:
        """What a request that failed for good becomes: a transient `RequestFailed` while the server
        is still there, `ServerGone` when it is not (so the run stops, with its results kept)."""
        plural = "s" if attempts != 1 else ""
        detail = f"{method} {path}: {failure.detail} ({attempts} attempt{plural})"
        self._failures_in_a_row += 1
        limit = self.settings.give_up_after
        if limit is not None and self._failures_in_a_row >= limit:
            raise ServerGone(f"the last {self._failures_in_a_row} requests to {self._base} all failed after "
                             f"{attempts} attempt{plural} each (last: {failure.reason}, {detail}): check the server; "
                             "finished results are kept, and the same command resumes the run")
        silent = await self._probe()
        if silent is not None:
            raise ServerGone(f"the server at {self._base} stopped answering: a request failed after {attempts} "
                             f"attempt{plural} ({failure.reason}: {detail}) and GET {self.settings.probe_path} then "
                             f"got {silent}; the run stops without writing a dataset: finished results are kept, "
                             "and the same command resumes the run once the server is back")
        return RequestFailed(failure.reason, detail, transient=True, status=failure.status)

    async def _probe(self) -> str | None:
        """None when the server answers `GET probe_path` with any status below 500 within
        `probe_timeout_s` (it is there: the request failed for its own reason), else what happened."""
        path = self.settings.probe_path
        if path is None:
            return None
        try:
            async with self._get_session().get(self._url(path),
                                               timeout=aiohttp.ClientTimeout(total=self.settings.probe_timeout_s)) \
                    as response:
                await response.read()
                status = response.status
        except asyncio.TimeoutError:
            return f"no answer within {self.settings.probe_timeout_s:g} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"
        return f"HTTP {status}" if status >= 500 else None


async def served_models(settings: HttpSettings, *, group: str, serve_hint: str, timeout_s: float) -> list[str]:
    """`GET /models` once, with one short attempt: the ids the server serves.

    The start-up check of every OpenAI-compatible backend. A wrong URL must fail in seconds, not
    after the run's retry budget, and with one sentence that names the knob to fix (`group` is
    the backend's config group, `serve_hint` how to start a server).
    """
    return list(await model_cards(settings, group=group, serve_hint=serve_hint, timeout_s=timeout_s))


async def model_cards(settings: HttpSettings, *, group: str, serve_hint: str, timeout_s: float) -> dict[str, dict]:
    """`GET /models` as `served_models` does it: each served id with its card (vLLM's card holds
    `max_model_len`, the context length the server was started with)."""
    client = HttpClient(dataclasses.replace(settings, max_attempts=1, timeout_s=timeout_s, probe_path=None),
                        max_connections=1)
    try:
        listing = await client.get_json("/models")
    except (RequestFailed, ServerRefused) as exc:
        raise BackendUnavailable(_probe_failure(exc, settings, group, serve_hint, timeout_s)) from None
    finally:
        await client.aclose()
    return {m["id"]: m for m in listing.get("data", []) if isinstance(m, dict) and isinstance(m.get("id"), str)}


def _probe_failure(exc: RequestFailed | ServerRefused, settings: HttpSettings, group: str, serve_hint: str,
                   timeout_s: float) -> str:
    base_url = settings.base_url.rstrip("/")
    if isinstance(exc, ServerRefused):
        status = exc.error.status
        if status in (401, 403):
            key = settings.api_key_env
            hint = (f"set the environment variable {key} to the server's key" if key else
                    f"name the environment variable holding the key in {group}.api_key_env")
            return f"the server at {base_url} refused the request (HTTP {status}): {hint}"
        if status == 404:
            return (f"{base_url}/models does not exist (HTTP 404): {group}.base_url must be the API root "
                    "of an OpenAI-compatible server, usually ending in /v1")
        return (f"the server at {base_url} is not usable as an OpenAI-compatible API: GET /models gave "
                f"{exc.error.describe()}")
    if exc.reason == "connection_error":
        return f"no server answers at {base_url} ({exc.detail}): start one ({serve_hint}) or fix {group}.base_url"
    if exc.reason == "timeout":
        return (f"the server at {base_url} did not answer GET /models within {timeout_s:g} s: "
                f"check that it has finished loading, or raise {group}.check_timeout_s")
    return f"the server at {base_url} is not usable as an OpenAI-compatible API: GET /models gave {exc}"

