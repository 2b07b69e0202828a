"""`generator=images_api` / `reference=images_api`: an images endpoint, vLLM-Omni's or OpenAI's.

`POST {base_url}/images/generations`; the image comes back as `data[0].b64_json`. The two APIs
take different request fields, and both punish a wrong one: OpenAI answers 400 "Unknown
parameter" (the GPT image models refuse `seed` and `response_format`), while vLLM-Omni silently
ignores a field it does not know (a guidance knob meant for another model does nothing, and the
run would record a setting that was never used). So `api:` names the API, `params:` holds the
optional fields to send, and a field the chosen API (and, for OpenAI, the chosen model) does not
take is refused when the backend is built, with one sentence naming the fields it does take:

- `api: vllm_omni` (`vllm serve Qwen/Qwen-Image --omni`: FLUX, SD3, Qwen-Image, HunyuanImage-3 …):
  always `seed` and `response_format: b64_json`; `params` may hold vLLM-Omni 0.30's diffusion fields
  (`num_inference_steps`, `guidance_scale`, `true_cfg_scale`, `flow_shift`, `negative_prompt`,
  `output_compression`, `layers` …) and `extra_args`, the model's own arguments. `vae_use_slicing`
  and `vae_use_tiling` are refused: vLLM-Omni applies them only when the model starts.
- `api: openai` (api.openai.com): the fields of the model's family: the GPT image models
  (`quality`, `background`, `moderation`, `output_format`, `output_compression`; always base64,
  no `response_format`), `dall-e-3` (`quality`, `style`) and `dall-e-2`; `response_format:
  b64_json` for the two DALL-E models. OpenAI takes no seed: its images cannot be regenerated,
  and the identity says so (`seed_sent: false`).

`model` is required: it is sent with every request and checked against `GET /models` at
start-up, so results of different models never share a cache key. Knobs in `params` left `null`
are not sent (the server's default applies).

All HTTP goes through `curation.backends.http` (pooled connections, time-outs, retries, failure
classes): a request that still fails after its last attempt becomes a transient `Reject` (tried
again by the next run); one the server refuses for its prompt (a safety system: `content_policy`)
a kept reject; one it refuses for the configuration (a wrong model, an unknown parameter, a
refused key) stops the run with the server's message. Attempts and latency go to `summary()`.
Returned bytes are checked to decode and then kept as they are (never re-encoded).

`check()` asks `GET /models` once before any work and names what is wrong in one sentence: no
server, wrong URL, refused key, or a model the server does not serve. `HttpImageGenerator` is
the part every HTTP image backend shares (that probe, the request, the image checks);
`bagel_omni` is the same thing with a chat-shaped request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping

from curation.core import images
from curation.backends.base import BackendUnavailable, GeneratedImage, GenerateRequest, ImageGenerator
from curation.backends.http import ApiKeyMissing, HttpClient, HttpSettings, RequestFailed, served_models
from curation.core.config import redact_text
from curation.core.records import Reject


class HttpImageGenerator(ImageGenerator):
    """An image generator behind an HTTP endpoint; subclasses say what to send and where the image is."""

    path: str
    serve_hint: str  # how to start a server, for the start-up error
    group: str  # the config group(s) it is selected in, to name knobs in messages

    def __init__(self, base_url: str, model: str | None = None, revision: str | None = None,
                 width: int = 1024, height: int = 1024, api_key_env: str | None = None,
                 http: Mapping[str, Any] | None = None, check_timeout_s: float = 15.0, concurrency: int = 4):
        if not base_url:
            raise BackendUnavailable(f"{self.group}.base_url is not set: give the API root, e.g. http://host:8000/v1")
        if not model:
            raise BackendUnavailable(f"{self.group}.model is not set: name the model to ask the server at "
                                     f"{redact_text(base_url)} for (it is sent with every request and recorded "
                                     "with each image)")
        self.base_url = base_url.rstrip("/")
        self.model = str(model)
        self.revision = revision
        self.width, self.height = int(width), int(height)
        if self.width < 1 or self.height < 1:
            raise BackendUnavailable(f"{self.group} image size {self.width}x{self.height} must be positive")
        self.check_timeout_s = float(check_timeout_s)
        self.concurrency = int(concurrency)
        try:
            self.http_settings = HttpSettings(base_url=self.base_url, api_key_env=api_key_env, **(http or {}))
            self.client = HttpClient(self.http_settings, max_connections=self.concurrency)
        except ApiKeyMissing as exc:
            raise BackendUnavailable(str(exc)) from None
        except ValueError as exc:  # HttpSettings refuses impossible values
            raise BackendUnavailable(f"{self.group}.http: {exc}") from None

    # ------------------------------------------------------------------ what subclasses define

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Everything sent besides prompt and seed: part of the identity, so of every result's key."""

    @abstractmethod
    def payload(self, request: GenerateRequest) -> dict[str, Any]:
        """The JSON body for one request."""

    @abstractmethod
    def image_from(self, response: dict[str, Any]) -> bytes | Reject:
        """The encoded image in a response, or a reject saying what is missing."""

    # ------------------------------------------------------------------ backend

    def identity(self) -> dict:
        # The URL is not part of it: the same model behind another address gives the same images.
        return {"id": self.model, "revision": self.revision or "unpinned", "settings": self.settings()}

    def check(self) -> None:
        asyncio.run(self._probe())

    async def _probe(self) -> None:
        """GET /models once: the server answers, the key works, and it serves `model`."""
        served = await served_models(self.http_settings, group=self.group, serve_hint=self.serve_hint,
                                     timeout_s=self.check_timeout_s)
        if self.model not in served:
            raise BackendUnavailable(f"the server at {redact_text(self.base_url)} serves {served or 'no models'}, not "
                                     f"{self.model!r}: set {self.group}.model to one of those")

    async def generate(self, request: GenerateRequest) -> GeneratedImage | Reject:
        # A configuration refusal (ServerRefused) or a server gone (ServerGone) propagates: the run stops.
        try:
            response = await self.client.post_json(self.path, self.payload(request))
        except RequestFailed as exc:  # transient after the last attempt, or refused for this prompt
            return Reject(self.role, exc.reason, exc.detail, transient=exc.transient)
        data = self.image_from(response)
        if isinstance(data, Reject):
            return data
        try:
            ref = await asyncio.to_thread(images.probe, data)  # decoding a 1024² image: off the event loop
        except images.ImageDecodeError as exc:
            return Reject(self.role, "undecodable_image", f"the server's image does not decode: {exc}")
        lineage = self.sent_lineage(request)  # attempts and latency are per-run accounting: summary()
        if (ref.width, ref.height) != (request.width, request.height):
            lineage["returned_size"] = [ref.width, ref.height]
        return GeneratedImage(image=data, lineage=lineage)

    def sent_lineage(self, request: GenerateRequest) -> dict[str, Any]:
        """What this request sent that determines its image, beyond the identity's settings."""
        return {"seed": request.seed}

    def summary(self) -> dict[str, Any]:
        return self.client.accounting.as_dict()

    async def aclose(self) -> None:
        await self.client.aclose()

    def decode_base64(self, text: Any, where: str) -> bytes | Reject:
        if not isinstance(text, str) or not text:
            return Reject(self.role, "no_image", f"the response has no image at {where}")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            return Reject(self.role, "bad_image_data", f"{where} is not base64: {exc}")


@dataclass(frozen=True)
class ImagesApi:
    """What one images API (or one OpenAI model family) takes in a request body."""

    name: str
    #: optional fields a user may set in `params` (anything else is refused when the backend is built)
    accepts: frozenset[str]
    #: fields sent with every request besides prompt, model, n and size
    always: Mapping[str, Any] = field(default_factory=dict)
    #: whether it takes `seed` (then every request is seeded, and its image can be regenerated)
    seeded: bool = False
    #: the `size` values it accepts, when its documentation gives a fixed list
    sizes: frozenset[str] | None = None
    #: whether it needs an API key
    needs_key: bool = False
    #: fields a user might expect to send that it must not take, each with why (one sentence's end)
    refused: Mapping[str, str] = field(default_factory=dict)
    #: a `params` name sent under another field name
    wire_names: Mapping[str, str] = field(default_factory=dict)


# vLLM-Omni 0.30's `ImageGenerationRequest` (vllm_omni/entrypoints/openai/protocol/images.py): a pydantic
# model that ignores fields it does not declare, and refuses any response_format but b64_json (and
# `file`, a binary answer). `extra_args` (the model's own arguments, e.g. Qwen-Image's) goes on the wire
# as `extra_params`, the only name that model declares: there `extra_args` would be dropped without an
# error (the chat route's newer name; api_server.py copies `extra_params` into the model's extra_args and
# `flow_shift` over it, so a key given in both would be decided silently: refused here).
VLLM_OMNI = ImagesApi(
    "vllm_omni", accepts=frozenset({"negative_prompt", "num_inference_steps", "guidance_scale", "true_cfg_scale",
                                    "flow_shift", "output_format", "output_compression", "layers",
                                    "generator_device", "system_prompt", "use_system_prompt", "lora", "user",
                                    "extra_args"}),
    always={"response_format": "b64_json"}, seeded=True, wire_names={"extra_args": "extra_params"},
    refused={"vae_use_slicing": "VAE slicing is applied only when the model starts: start the server with "
                                "--vae-use-slicing (a request's field is ignored)",
             "vae_use_tiling": "VAE tiling is applied only when the model starts: start the server with "
                               "--vae-use-tiling (a request's field is ignored)",
             "extra_params": "it is the deprecated name: put the model's arguments in params.extra_args "
                             "(sent as the field this vLLM-Omni declares)"})
# OpenAI's Images API reference (POST /v1/images/generations), by model family.
OPENAI_GPT_IMAGE = ImagesApi(
    "openai/gpt-image", accepts=frozenset({"quality", "background", "moderation", "output_format",
                                           "output_compression", "user"}), needs_key=True)
OPENAI_GPT_IMAGE_1 = dataclasses.replace(  # the gpt-image-1 models document three sizes
    OPENAI_GPT_IMAGE, name="openai/gpt-image-1", sizes=frozenset({"1024x1024", "1536x1024", "1024x1536"}))
OPENAI_DALL_E_3 = ImagesApi(
    "openai/dall-e-3", accepts=frozenset({"quality", "style", "user"}), always={"response_format": "b64_json"},
    sizes=frozenset({"1024x1024", "1792x1024", "1024x1792"}), needs_key=True)
OPENAI_DALL_E_2 = ImagesApi(
    "openai/dall-e-2", accepts=frozenset({"quality", "user"}), always={"response_format": "b64_json"},
    sizes=frozenset({"256x256", "512x512", "1024x1024"}), needs_key=True)
APIS = ("vllm_omni", "openai")
# Request fields the backend sets itself, and the knob that decides each.
RESERVED = {"prompt": "the sample's prompt", "model": "model", "n": "one image per request", "size": "width/height",
            "seed": "the sample's seed", "response_format": "always base64 (b64_json)"}


def images_api_for(api: str, model: str) -> ImagesApi:
    """The request contract of `api` for `model` (OpenAI's fields depend on the model's family)."""
    if api == "vllm_omni":
        return VLLM_OMNI
    if api != "openai":
        raise BackendUnavailable(f"images_api api={api!r} is not one of {list(APIS)}")
    if model.startswith("dall-e-3"):
        return OPENAI_DALL_E_3
    if model.startswith("dall-e-2"):
        return OPENAI_DALL_E_2
    if model.startswith("gpt-image-1"):
        return OPENAI_GPT_IMAGE_1
    if model.startswith(("gpt-image", "chatgpt-image")):
        return OPENAI_GPT_IMAGE
    raise BackendUnavailable(f"api=openai does not know which request fields model {model!r} takes: use a GPT "
                             "image model (gpt-image-*, chatgpt-image-*), dall-e-3 or dall-e-2")


class ImagesApiGenerator(HttpImageGenerator):
    path = "/images/generations"
    serve_hint = "e.g. vllm serve Qwen/Qwen-Image --omni"
    group = "reference (or generator)"

    def __init__(self, base_url: str, model: str | None = None, api: str = "vllm_omni",
                 params: Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(base_url, model=model, **kwargs)
        self.api = images_api_for(api, self.model)
        self.params = {k: v for k, v in dict(params or {}).items() if v is not None}
        for name in self.params:
            if name in RESERVED:
                raise BackendUnavailable(f"params.{name} is set by the backend ({RESERVED[name]}): remove it "
                                         "from params")
            if name in self.api.refused:
                raise BackendUnavailable(f"{self.api.name} does not take params.{name}: {self.api.refused[name]}")
            if name not in self.api.accepts:
                raise BackendUnavailable(f"{self.api.name} does not take a {name!r} field: params may hold "
                                         f"{sorted(self.api.accepts)}")
        self.check_values()
        size = f"{self.width}x{self.height}"
        if self.api.sizes is not None and size not in self.api.sizes:
            raise BackendUnavailable(f"{self.api.name} draws only sizes {sorted(self.api.sizes)}, not {size}: "
                                     "set width and height to one of them")
        if self.api.needs_key and self.http_settings.api_key_env is None:
            raise BackendUnavailable(f"{self.api.name} needs a key: set api_key_env to the NAME of the "
                                     "environment variable holding it, e.g. api_key_env=OPENAI_API_KEY")

    def check_values(self) -> None:
        """Values the server would refuse on every request, refused once here."""
        extra = self.params.get("extra_args")
        if extra is not None:
            if not isinstance(extra, Mapping):
                raise BackendUnavailable(f"params.extra_args must be a mapping of the model's arguments, not {extra!r}")
            twice = sorted(set(extra) & (set(self.params) | set(RESERVED)))
            if twice:
                raise BackendUnavailable(f"params.extra_args gives {twice} a second time (also a request field): "
                                         "give each key once")
        # The bounds of vLLM-Omni 0.30's ImageGenerationRequest (its 400 otherwise, on every request).
        for name, low, high in (("output_compression", 0, 100), ("layers", 2, 10)):
            value = self.params.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
                raise BackendUnavailable(f"params.{name}={value!r} must be an integer within {low}..{high}")

    def settings(self) -> dict[str, Any]:
        return {"api": self.api.name, "width": self.width, "height": self.height, "seed_sent": self.api.seeded,
                **self.params}

    def payload(self, request: GenerateRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "prompt": request.prompt, "n": 1,
                                "size": f"{request.width}x{request.height}", **self.api.always}
        if self.api.seeded:
            body["seed"] = request.seed
        body.update({self.api.wire_names.get(k, k): v for k, v in self.params.items()})
        return body

    def image_from(self, response: dict[str, Any]) -> bytes | Reject:
        data = response.get("data")
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            return Reject(self.role, "no_image", "the response has no data[0]")
        return self.decode_base64(data[0].get("b64_json"), "data[0].b64_json")
