"""`teacher=vllm_server`: Qwen2.5-VL (or any vision chat model) behind an OpenAI-compatible server.

    vllm serve Qwen/Qwen2.5-VL-7B-Instruct --limit-mm-per-prompt '{"image": 2, "video": 0}' ...
    python -m curation.run recipe=improving_full teacher=vllm_server \\
        teacher.base_url=http://host:8000/v1 teacher.model=Qwen/Qwen2.5-VL-7B-Instruct

Each thinking is one `POST /chat/completions` with the images as data URIs, every sampling field
(`teacher.sampling`, none left for the server to fill from the checkpoint's generation config) and
the per-sample seed. `api` says how a server takes the fields OpenAI's API lacks: `vllm` (top-level
`top_k`, `min_p`, `repetition_penalty`, as `vllm serve` does) or `transformers` (`transformers
serve`, which refuses unknown fields: one `generation_config` JSON, as `generate` takes it). An image already within the pixel budget (on the grid, plain RGB, PNG/JPEG/WebP)
goes as stored, bytes unchanged; any other is resized to the budget and JPEG-encoded. Each image
is prepared once per process, by content hash: the high-quality image goes to both teacher stages,
and every resample sends its images again. `extra_body` adds server-specific fields (vLLM:
`structured_outputs`, ...; not the sampling fields, which have their own knobs). All HTTP — pooling,
time-outs, retries, the API key, failure classes — goes through `curation.backends.http`: a request
that still fails after its last attempt becomes a transient `Reject` (the next run tries it again),
one the server refuses for its sample (too long for the context) a kept `request_too_long` reject,
and one it refuses for the configuration (a wrong model, parameter or key) stops the run. `check()` asks `GET /models` before any work and names what is wrong in one
sentence: no server, wrong URL, refused key, or a model the server does not serve.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from collections import OrderedDict
from typing import Any, Mapping

from PIL import Image

from curation.backends.base import BackendUnavailable, ImageInput
from curation.backends.teachers.refusals import RefusalJudge
from curation.backends.teachers.prompting import (INLINE_MAX_PIXELS, ChatTeacher, Completion, ImageBudget,
                                                  ImageEncoding, encode_image, fit_image, fitted_size)
from curation.backends.http import (AmbiguousRefusal, ApiKeyMissing, DataURI, HttpClient, HttpSettings, RequestFailed,
                                    ServerRefused, model_cards)
from curation.core.records import Reject


class VllmServerTeacher(ChatTeacher):
    def __init__(self, base_url: str, model: str, *, revision: str | None = None, api_key_env: str | None = None,
                 concurrency: int = 64, http: Mapping[str, Any], check_timeout_s: float = 15.0,
                 sampling: Mapping[str, Any], max_pixels: int, min_pixels: int, pixel_multiple: int,
                 image_format: str = "jpeg", jpeg_quality: int = 90, keep_stored_images: bool = True,
                 image_cache_mb: float = 128, api: str = "vllm",
                 extra_body: Mapping[str, Any] | None = None):
        super().__init__(sampling=sampling, max_pixels=max_pixels, min_pixels=min_pixels,
                         pixel_multiple=pixel_multiple)
        self.encoding = ImageEncoding(format=image_format, jpeg_quality=int(jpeg_quality),
                                      keep_stored=bool(keep_stored_images))
        self._prepared = PreparedImages(int(float(image_cache_mb) * 2 ** 20))
        if not base_url or not model:
            raise BackendUnavailable("teacher=vllm_server needs teacher.base_url (e.g. http://host:8000/v1) "
                                     "and teacher.model (the name the server serves)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.revision = revision
        self.concurrency = int(concurrency)
        self.check_timeout_s = float(check_timeout_s)
        self.extra_body = dict(extra_body or {})
        self.sampling.refuse_overrides(self.extra_body, "teacher.extra_body")
        if api not in SAMPLING_APIS:
            raise BackendUnavailable(f"teacher.api={api!r}: use vllm (vllm serve) or transformers (transformers serve)")
        self.api = api
        self.max_model_len: int | None = None  # from the server's model card, when it lists one
        self._tokenizer_client: HttpClient | None = None  # made at the first refusal that needs measuring
        self.refusals = RefusalJudge()
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
        # `api` is not here: it says how the same sampling fields are spelled, not what they are.
        return {"encoding": dataclasses.asdict(self.encoding), "extra_body": self.extra_body}

    def check(self) -> None:
        asyncio.run(self._probe())

    async def _probe(self) -> None:
        cards = await model_cards(self.http_settings, group="teacher", timeout_s=self.check_timeout_s,
                                  serve_hint=f"`vllm serve {self.model}`, see docs/teacher.md")
        if self.model not in cards:
            raise BackendUnavailable(
                f"the server at {self.base_url} serves {list(cards) or 'no models'}, not {self.model!r}: set "
                f"teacher.model to one of those, or start the server with {self.model} (vllm serve "
                f"{self.model}, or --served-model-name {self.model})")
        limit = cards[self.model].get("max_model_len")
        self.max_model_len = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
        if self.max_model_len is not None and self.sampling.max_tokens >= self.max_model_len:
            # vLLM refuses max_tokens > max_model_len for every request alike (param max_tokens), and
            # at max_model_len no prompt would fit: a setting, so it is said before any work.
            raise BackendUnavailable(
                f"teacher.sampling.max_tokens={self.sampling.max_tokens} leaves no room for a prompt: the server "
                f"at {self.base_url} serves {self.model} with max_model_len {self.max_model_len}; lower "
                "teacher.sampling.max_tokens or start the server with a larger --max-model-len")

    # ------------------------------------------------------------------ one chat

    async def prepare_image(self, image: ImageInput) -> tuple[DataURI, tuple[int, int]]:
        """The image's data URI and the size the model sees, made once per image (by content hash)."""
        key = image.ref.sha256
        prepared = self._prepared.get(key)
        if prepared is None:
            ref = image.ref
            if self.encoding.keep_stored and sendable_as_stored(image, self.budget):
                prepared = DataURI(f"image/{ref.format}", image.data), (ref.width, ref.height)
            elif ref.width * ref.height <= INLINE_MAX_PIXELS:
                prepared = self._reencode(image)
            else:
                # Decoding, resizing and encoding a large image take milliseconds and release the
                # GIL: a worker thread keeps the event loop free for the other requests in flight.
                prepared = await asyncio.to_thread(self._reencode, image)
            self._prepared.put(key, prepared, len(prepared[0].text))
        return prepared

    def _reencode(self, image: ImageInput) -> tuple[DataURI, tuple[int, int]]:
        fitted = fit_image(image.pil(), self.budget)
        return DataURI(f"image/{self.encoding.format}", encode_image(fitted, self.encoding)), fitted.size

    def payload(self, system: str, parts: list[tuple[str, Any]], seed: int) -> dict[str, Any]:
        content = [{"type": "text", "text": value} if kind == "text" else
                   {"type": "image_url", "image_url": {"url": value[0]}} for kind, value in parts]
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        if self.api == "transformers":
            # `transformers serve` builds a GenerationConfig from this JSON; the checkpoint then only
            # fills what is None in it (generate_kwargs sets every field that picks tokens).
            sampling = {"max_tokens": self.sampling.max_tokens,
                        "generation_config": json.dumps(self.sampling.generate_kwargs(), sort_keys=True)}
        else:
            sampling = self.sampling.vllm_fields()
        return {"model": self.model, "messages": messages, **sampling, "seed": seed, **self.extra_body}

    async def complete(self, system: str, parts: list[tuple[str, Any]], seed: int, stage: str) -> Completion | Reject:
        # A configuration refusal (ServerRefused) or a server gone (ServerGone) propagates: the run stops.
        payload = self.payload(system, parts, seed)
        with self.refusals.request():
            try:
                data = await self.client.post_json("/chat/completions", payload)
            except RequestFailed as exc:  # transient after the last attempt, or refused for this sample
                return Reject(stage, exc.reason, exc.detail, transient=exc.transient)
            except AmbiguousRefusal as exc:  # this sample, or every request alike? measured, not read
                return await self._judge(exc, payload, stage)
            self.refusals.answer()
        completion = parse_chat_response(data)
        if isinstance(completion, str):
            return Reject(stage, "malformed_response", completion, transient=True)
        sizes = [value[1] for kind, value in parts if kind == "image"]
        completion.notes["image_sizes"] = [f"{w}x{h}" for w, h in sizes]  # what the model saw
        return completion

    async def _judge(self, refusal: AmbiguousRefusal, payload: dict[str, Any], stage: str) -> Reject:
        """A 400 that names no field: this sample's kept reject, or the run stops (`ServerRefused`).

        Whose fault it is comes from what else happened (`refusals.RefusalJudge`): once a request
        of this run has been answered, it is this sample's; if every request in flight is refused
        and none answered, it is the setting's, and the run stops. The reason comes from a
        measurement: vLLM's `POST /tokenize` takes the same messages and answers `count` (images
        counted) and `max_model_len`; a prompt that leaves no room for one answer token is
        `request_too_long`, any other refusal `request_refused`, quoting the server.
        """
        size = await self._measure(payload)
        measured = f"; the prompt is {size[0]} tokens, the server's max_model_len {size[1]}" if size else ""
        detail = f"POST /chat/completions: {refusal.error.describe()} (not retried){measured}"
        if not await self.refusals.samples_own():
            raise ServerRefused(f"the server at {self.base_url} refused every request of this run so far and answered "
                                f"none ({refusal.error.describe()}{measured}), so it would refuse them all: raise the "
                                "server's --max-model-len, lower teacher.max_pixels, or fix the setting it names; "
                                "nothing was stored, and the same command runs again", refusal.error) from None
        self.client.accounting.refused += 1
        if size is not None and size[0] >= size[1]:
            return Reject(stage, "request_too_long", detail)
        return Reject(stage, "request_refused", detail)

    async def _measure(self, payload: dict[str, Any]) -> tuple[int, int] | None:
        """`(prompt tokens, max_model_len)` from the server's `/tokenize` (vLLM: at the root, beside /v1),
        or None where the server has no such endpoint or does not answer it."""
        if self._tokenizer_client is None:
            root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
            self._tokenizer_client = HttpClient(dataclasses.replace(self.http_settings, base_url=root, max_attempts=1,
                                                                    probe_path=None, give_up_after=None),
                                                max_connections=2)
        try:
            answer = await self._tokenizer_client.post_json("/tokenize", {"model": self.model,
                                                                          "messages": payload["messages"]})
        except (RequestFailed, ServerRefused):
            return None
        count, limit = answer.get("count"), answer.get("max_model_len", self.max_model_len)
        if isinstance(count, int) and isinstance(limit, int):
            return count, limit
        return None

    def backend_summary(self) -> dict[str, Any]:
        return self.client.accounting.as_dict()

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._tokenizer_client is not None:
            await self._tokenizer_client.aclose()


# How a server takes the sampling fields OpenAI's API has no name for (see the module docstring).
SAMPLING_APIS = ("vllm", "transformers")

# What OpenAI-compatible vision servers decode (vLLM opens images with Pillow).
SERVER_FORMATS = frozenset({"png", "jpeg", "webp"})


def sendable_as_stored(image: ImageInput, budget: ImageBudget) -> bool:
    """True when the stored bytes are already what the model should see, so resizing would change nothing."""
    ref = image.ref
    if ref.format not in SERVER_FORMATS or fitted_size(ref.width, ref.height, budget) != (ref.width, ref.height):
        return False
    # Plain 8-bit RGB only: alpha, grey, palette, 16-bit or CMYK images go through the same
    # conversion as before, so the pixels the model sees never depend on how a server converts.
    return plain_rgb(image.data, ref.format)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def plain_rgb(data: bytes, fmt: str) -> bool:
    """Whether encoded image bytes hold plain 8-bit RGB, from the header alone (no pixels decoded)."""
    if fmt == "png":  # the IHDR chunk comes first: bit depth at byte 24, colour type at 25 (2: RGB, no alpha)
        return data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and data[24:26] == b"\x08\x02"
    if fmt == "jpeg":  # Pillow's header parsing costs ~60 µs here: read the frame header ourselves
        return _jpeg_frame(data) == (8, 3)  # 8-bit, three components (YCbCr or RGB): Pillow's "RGB"
    try:  # Pillow reads only the header here; naming the format skips probing every other plugin
        with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as header:
            return header.mode == "RGB"
    except Exception:  # noqa: BLE001 — unreadable here; the re-encode path raises ImageDecodeError for it
        return False


def _jpeg_frame(data: bytes) -> tuple[int, int] | None:
    """(bits per sample, components) from a JPEG's start-of-frame segment, or None if there is none."""
    i = 2  # after SOI; every segment before the frame header has a 2-byte length
    while i + 9 < len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOF0-15, less DHT, JPG, DAC
            return data[i + 4], data[i + 9]
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


class PreparedImages:
    """Prepared images by content hash, the most recently used kept, up to `max_bytes` of data URIs.

    A sample's high-quality image is asked for by its initial thinking and again by its improving
    thinking a few hundred samples later; 128 MB holds ~1,000 budget-sized JPEGs.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Any | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, value: Any, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._items[key] = (value, nbytes)
        self._bytes += nbytes
        while self._bytes > self.max_bytes:
            _, (_, dropped) = self._items.popitem(last=False)
            self._bytes -= dropped


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
