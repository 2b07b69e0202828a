"""`teacher=vllm_server`: Qwen2.5-VL (or any vision chat model) behind an OpenAI-compatible server.

    vllm serve Qwen/Qwen2.5-VL-7B-Instruct --limit-mm-per-prompt '{"image": 2, "video": 0}' ...
    python -m curation.run recipe=improving_full teacher=vllm_server \\
        teacher.base_url=http://host:8000/v1 teacher.model=Qwen/Qwen2.5-VL-7B-Instruct

Each thinking is one `POST /chat/completions` with the images as JPEG data URIs (resized to the
pixel budget first), the sampling knobs and the per-sample seed; `extra_body` adds server-specific
fields (vLLM: `top_k`, `repetition_penalty`, `structured_outputs`, ...). All HTTP — pooling,
time-outs, retries, the API key — goes through `curation.http`. A request that still fails after
its last attempt becomes a `Reject` with the client's reason, marked transient so the next run
tries it again. `check()` asks `GET /models` before any work and names what is wrong in one
sentence: no server, wrong URL, refused key, or a model the server does not serve.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Mapping

from PIL import Image

from curation.backends.base import BackendUnavailable
from curation.backends.teachers.prompting import (INLINE_MAX_PIXELS, ChatTeacher, Completion, ImageEncoding,
                                                  encode_image, fit_image)
from curation.http import ApiKeyMissing, DataURI, HttpClient, HttpSettings, RequestFailed, RequestStats
from curation.records import Reject


class VllmServerTeacher(ChatTeacher):
    def __init__(self, base_url: str, model: str, *, revision: str | None = None, api_key_env: str | None = None,
                 concurrency: int = 64, http: Mapping[str, Any], check_timeout_s: float = 15.0,
                 sampling: Mapping[str, Any], max_pixels: int, min_pixels: int, pixel_multiple: int,
                 image_format: str = "jpeg", jpeg_quality: int = 90, templates: Mapping[str, str],
                 extra_body: Mapping[str, Any] | None = None):
        super().__init__(templates=templates, sampling=sampling, max_pixels=max_pixels, min_pixels=min_pixels,
                         pixel_multiple=pixel_multiple)
        self.encoding = ImageEncoding(format=image_format, jpeg_quality=int(jpeg_quality))
        if not base_url or not model:
            raise BackendUnavailable("teacher=vllm_server needs teacher.base_url (e.g. http://host:8000/v1) "
                                     "and teacher.model (the name the server serves)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.revision = revision
        self.concurrency = int(concurrency)
        self.check_timeout_s = float(check_timeout_s)
        self.extra_body = dict(extra_body or {})
        try:
            self.http_settings = HttpSettings(base_url=self.base_url, api_key_env=api_key_env, **http)
            self.client = HttpClient(self.http_settings, max_connections=self.concurrency)
        except ApiKeyMissing as exc:
            raise BackendUnavailable(str(exc)) from None
        except ValueError as exc:  # HttpSettings refuses impossible values
            raise BackendUnavailable(f"teacher=vllm_server: {exc}") from None

    # ------------------------------------------------------------------ identity and start-up

    def model_identity(self) -> tuple[str, str]:
        # The URL is not part of it: the same model behind another address writes the same text.
        return self.model, self.revision or "unpinned"

    def backend_settings(self) -> dict[str, Any]:
        return {"encoding": dataclasses.asdict(self.encoding), "extra_body": self.extra_body}

    def check(self) -> None:
        asyncio.run(self._probe())

    async def _probe(self) -> None:
        # One quick attempt: a wrong URL must fail in seconds, not after the run's retry budget.
        settings = dataclasses.replace(self.http_settings, max_attempts=1, timeout_s=self.check_timeout_s)
        client = HttpClient(settings, max_connections=1)
        try:
            listing = await client.get_json("/models")
        except RequestFailed as exc:
            raise BackendUnavailable(self._probe_failure(exc)) from None
        finally:
            await client.aclose()
        served = [m["id"] for m in listing.get("data", []) if isinstance(m, dict) and isinstance(m.get("id"), str)]
        if self.model not in served:
            raise BackendUnavailable(
                f"the server at {self.base_url} serves {served or 'no models'}, not {self.model!r}: set "
                f"teacher.model to one of those, or start the server with {self.model} (vllm serve "
                f"{self.model}, or --served-model-name {self.model})")

    def _probe_failure(self, exc: RequestFailed) -> str:
        where = f"{self.base_url}/models"
        if exc.reason == "connection_error":
            return (f"no server answers at {self.base_url}: start one (`vllm serve {self.model}`, see docs/teacher.md) "
                    f"or fix teacher.base_url [{exc.detail}]")
        if exc.reason == "timeout":
            return (f"the server at {self.base_url} did not answer GET /models within {self.check_timeout_s:g} s: "
                    "check that it has finished loading, or raise teacher.check_timeout_s")
        if exc.status in (401, 403):
            key = self.http_settings.api_key_env
            hint = f"set the environment variable {key} to the server's key" if key else \
                "name the environment variable holding the key in teacher.api_key_env"
            return f"the server at {self.base_url} refused the request (HTTP {exc.status}): {hint}"
        if exc.status == 404:
            return (f"{where} does not exist (HTTP 404): teacher.base_url must be the API root of an "
                    "OpenAI-compatible server, usually ending in /v1")
        return f"the server at {self.base_url} is not usable as an OpenAI-compatible API: GET /models gave {exc}"

    # ------------------------------------------------------------------ one chat

    async def prepare_image(self, image: Image.Image) -> tuple[DataURI, tuple[int, int]]:
        def work():
            fitted = fit_image(image, self.budget)
            return DataURI(f"image/{self.encoding.format}", encode_image(fitted, self.encoding)), fitted.size

        if image.width * image.height <= INLINE_MAX_PIXELS:
            return work()
        # Resizing and encoding a large image takes milliseconds and releases the GIL: a worker
        # thread keeps the event loop free for the other requests in flight.
        return await asyncio.to_thread(work)

    def payload(self, system: str, parts: list[tuple[str, Any]], seed: int) -> dict[str, Any]:
        content = [{"type": "text", "text": value} if kind == "text" else
                   {"type": "image_url", "image_url": {"url": value[0]}} for kind, value in parts]
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        s = self.sampling
        return {"model": self.model, "messages": messages, "temperature": s.temperature, "top_p": s.top_p,
                "max_tokens": s.max_tokens, "seed": seed, **self.extra_body}

    async def complete(self, system: str, parts: list[tuple[str, Any]], seed: int, stage: str) -> Completion | Reject:
        stats = RequestStats()
        try:
            data = await self.client.post_json("/chat/completions", self.payload(system, parts, seed), stats=stats)
        except RequestFailed as exc:
            return Reject(stage, exc.reason, exc.detail, transient=exc.transient)
        completion = parse_chat_response(data)
        if isinstance(completion, str):
            return Reject(stage, "malformed_response", completion, transient=True)
        completion.attempts = stats.attempts
        sizes = [value[1] for kind, value in parts if kind == "image"]
        completion.notes["image_sizes"] = [f"{w}x{h}" for w, h in sizes]  # what the model saw
        return completion

    async def aclose(self) -> None:
        await self.client.aclose()


def parse_chat_response(data: dict) -> Completion | str:
    """A `Completion` from an OpenAI chat response, or a sentence saying what is missing."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return f"the response has no choices: {str(data)[:200]}"
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return "the response's first choice has no message"
    content = message.get("content") or ""
    if not isinstance(content, str):
        return f"the message content is {type(content).__name__}, not text"
    # A server started with a reasoning parser moves the thinking out of `content`; put it back
    # where IRGL wants it, inside <think> tags.
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning.strip() and "<think>" not in content:
        content = f"<think>\n{reasoning.strip()}\n</think>{content}"
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return Completion(text=content, finish_reason=choice.get("finish_reason"),
                      prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"))
