"""`generator=images_api` / `reference=images_api`: an OpenAI-compatible images endpoint.

`POST {base_url}/images/generations` with `prompt`, `size` ("WxH"), `n: 1`, `seed` and
`response_format: b64_json`; the image comes back as `data[0].b64_json`. vLLM-Omni serves its
diffusion models this way (`vllm serve Qwen/Qwen-Image --omni`: FLUX, SD3, Qwen-Image,
HunyuanImage-3 …) and also takes `num_inference_steps`, `guidance_scale`, `true_cfg_scale` and
`negative_prompt`; knobs left `null` are not sent, so the server uses the model's defaults.

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
from abc import abstractmethod
from typing import Any, Mapping

from curation.core import images
from curation.backends.base import BackendUnavailable, GeneratedImage, GenerateRequest, ImageGenerator
from curation.backends.http import ApiKeyMissing, HttpClient, HttpSettings, RequestFailed, served_models
from curation.core.records import Reject


class HttpImageGenerator(ImageGenerator):
    """An image generator behind an HTTP endpoint; subclasses say what to send and where the image is."""

    path: str
    serve_hint: str  # how to start a server, for the start-up error

    def __init__(self, base_url: str, model: str | None = None, revision: str | None = None,
                 width: int = 1024, height: int = 1024, extra_body: Mapping[str, Any] | None = None,
                 api_key_env: str | None = None, http: Mapping[str, Any] | None = None,
                 check_timeout_s: float = 15.0, stage_name: str = "initial_image", concurrency: int = 4):
        self.group = "reference" if stage_name == "reference_image" else "generator"  # for messages
        if not base_url:
            raise BackendUnavailable(f"{self.group}.base_url is not set: give the API root, e.g. http://host:8000/v1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.revision = revision
        self.width, self.height = int(width), int(height)
        if self.width < 1 or self.height < 1:
            raise BackendUnavailable(f"{self.group} image size {self.width}x{self.height} must be positive")
        self.extra_body = dict(extra_body or {})
        self.check_timeout_s = float(check_timeout_s)
        self.stage_name = stage_name
        self.concurrency = int(concurrency)
        try:
            self.http_settings = HttpSettings(base_url=self.base_url, api_key_env=api_key_env, **(http or {}))
            self.client = HttpClient(self.http_settings, max_connections=self.concurrency)
        except ApiKeyMissing as exc:
            raise BackendUnavailable(str(exc)) from None
        except ValueError as exc:  # HttpSettings refuses impossible values
            raise BackendUnavailable(f"{self.group}.http: {exc}") from None

    # ------------------------------------------------------------------ what subclasses define

    def settings(self) -> dict[str, Any]:
        """Everything sent besides prompt and seed: part of the identity, so of every result's key."""
        return {"width": self.width, "height": self.height, **self.extra_body}

    @abstractmethod
    def payload(self, request: GenerateRequest) -> dict[str, Any]:
        """The JSON body for one request."""

    @abstractmethod
    def image_from(self, response: dict[str, Any]) -> bytes | Reject:
        """The encoded image in a response, or a reject saying what is missing."""

    # ------------------------------------------------------------------ backend

    def identity(self) -> dict:
        # The URL is not part of it: the same model behind another address gives the same images.
        return {"id": self.model or "unnamed", "revision": self.revision or "unpinned", "settings": self.settings()}

    def check(self) -> None:
        asyncio.run(self._probe())

    async def _probe(self) -> None:
        """GET /models once: the server answers, the key works, and it serves `model`."""
        served = await served_models(self.http_settings, group=self.group, serve_hint=self.serve_hint,
                                     timeout_s=self.check_timeout_s)
        if self.model is None and served:
            self.model = served[0]  # named in the identity, so results of different models never mix
        elif self.model not in served:
            raise BackendUnavailable(f"the server at {self.base_url} serves {served or 'no models'}, not "
                                     f"{self.model!r}: set {self.group}.model to one of those, or null")

    async def generate(self, request: GenerateRequest) -> GeneratedImage | Reject:
        # A configuration refusal (ServerRefused) or a server gone (ServerGone) propagates: the run stops.
        try:
            response = await self.client.post_json(self.path, self.payload(request))
        except RequestFailed as exc:  # transient after the last attempt, or refused for this prompt
            return Reject(self.stage_name, exc.reason, exc.detail, transient=exc.transient)
        data = self.image_from(response)
        if isinstance(data, Reject):
            return data
        try:
            ref = await asyncio.to_thread(images.probe, data)  # decoding a 1024² image: off the event loop
        except images.ImageDecodeError as exc:
            return Reject(self.stage_name, "undecodable_image", f"the server's image does not decode: {exc}")
        lineage = {"seed": request.seed}  # attempts and latency are per-run accounting: summary()
        if (ref.width, ref.height) != (request.width, request.height):
            lineage["returned_size"] = [ref.width, ref.height]
        return GeneratedImage(image=data, lineage=lineage)

    def summary(self) -> dict[str, Any]:
        return self.client.accounting.as_dict()

    async def aclose(self) -> None:
        await self.client.aclose()

    def decode_base64(self, text: Any, where: str) -> bytes | Reject:
        if not isinstance(text, str) or not text:
            return Reject(self.stage_name, "no_image", f"the response has no image at {where}")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            return Reject(self.stage_name, "bad_image_data", f"{where} is not base64: {exc}")


class ImagesApiGenerator(HttpImageGenerator):
    path = "/images/generations"
    serve_hint = "e.g. vllm serve Qwen/Qwen-Image --omni"

    def __init__(self, base_url: str, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 true_cfg_scale: float | None = None, negative_prompt: str | None = None, **kwargs: Any):
        super().__init__(base_url, **kwargs)
        self.knobs = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale,
                      "true_cfg_scale": true_cfg_scale, "negative_prompt": negative_prompt}

    def settings(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height,
                **{k: v for k, v in self.knobs.items() if v is not None}, **self.extra_body}

    def payload(self, request: GenerateRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": request.prompt, "size": f"{request.width}x{request.height}", "n": 1,
                                "seed": request.seed, "response_format": "b64_json"}
        if self.model is not None:
            body["model"] = self.model
        body.update({k: v for k, v in self.knobs.items() if v is not None})
        body.update(self.extra_body)
        return body

    def image_from(self, response: dict[str, Any]) -> bytes | Reject:
        data = response.get("data")
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            return Reject(self.stage_name, "no_image", "the response has no data[0]")
        return self.decode_base64(data[0].get("b64_json"), "data[0].b64_json")
