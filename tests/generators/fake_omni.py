"""A fake vLLM-Omni server speaking the documented request/response formats, for the HTTP generator tests.

- `GET  /v1/models`             -> `{"data": [{"id": <model>}]}`
- `POST /v1/chat/completions`   -> BAGEL text-to-image: `"modalities": ["image"]`, the prompt wrapped in
  `<|im_start|>…<|im_end|>`, top-level `height`/`width`/`num_inference_steps`/`seed`; the image comes back
  as a PNG data URI in `choices[0].message.content[0].image_url.url`.
- `POST /v1/images/generations` -> vLLM-Omni's `ImageGenerationRequest`: `prompt`, `size` "WxH", `n`, `seed`,
  `response_format` (only `b64_json`), and its diffusion fields; the image comes back as `data[0].b64_json`.
  Like the real one (a pydantic model with the default `extra="ignore"`), it IGNORES a field it does
  not declare, without an error; the fake records such fields in `ignored`, so tests can check that a
  backend never sends a field that would silently do nothing. Values it validates (response_format,
  size, n, num_inference_steps) get vLLM's 400: `{"error": {"message", "type", "param", "code": 400}}`.

Images are offline-world renderings of the prompt (with the base model's seeded defects on the chat
route, as BAGEL's weaker first image), or a flat colour for prompts outside the world's grammar, so a
whole recipe can run against this server. Requests it cannot serve get the status a real server gives.
Every request body is kept in `requests`, for tests to check what the backend sent.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from aiohttp import web
from PIL import Image

from curation.world.defects import sample_defects
from curation.world.render import render_scene
from curation.world.scene import PromptOutsideGrammar, parse_prompt

BAGEL = "ByteDance-Seed/BAGEL-7B-MoT"
QWEN_IMAGE = "Qwen/Qwen-Image"
# The fields of vLLM-Omni's ImageGenerationRequest (vllm_omni/entrypoints/openai/protocol/images.py).
OMNI_IMAGE_FIELDS = {"prompt", "model", "n", "size", "response_format", "user", "layers", "negative_prompt",
                     "system_prompt", "use_system_prompt", "num_inference_steps", "guidance_scale", "true_cfg_scale",
                     "seed", "generator_device", "lora", "vae_use_slicing", "vae_use_tiling", "output_format"}


def vllm_bad_request(message: str) -> web.Response:
    """vLLM's answer to a request its pydantic model refuses."""
    return web.json_response({"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}},
                             status=400)
IM_START, IM_END = "<|im_start|>", "<|im_end|>"


def draw(prompt: str, width: int, height: int, seed: int, defect_rate: float) -> bytes:
    try:
        scene = parse_prompt(prompt)
    except PromptOutsideGrammar:
        scene = None
    if scene is not None and width == height:
        rng = np.random.default_rng(seed)
        defects = sample_defects(scene, rng, defect_rate) if defect_rate > 0 else []
        image = render_scene(scene, width, seed, defects)
    else:
        colour = tuple(int(c) for c in np.random.default_rng(seed).integers(0, 256, 3))
        image = Image.new("RGB", (width, height), colour)
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class FakeOmni:
    def __init__(self, models: tuple[str, ...] = (BAGEL, QWEN_IMAGE), api_key: str | None = None):
        self.served = models
        self.api_key = api_key
        self.requests: list[tuple[str, dict]] = []  # (path, JSON body) of every generation request
        self.ignored: list[str] = []  # fields of image requests the real server would silently ignore

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/images/generations", self.images)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "invalid api key"}}, status=401)
        return await handler(request)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in self.served]})

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("/v1/chat/completions", body))
        if body.get("modalities") != ["image"]:
            return web.json_response({"error": {"message": "only image output is served here"}}, status=400)
        text = body["messages"][0]["content"][0]["text"]
        if not (text.startswith(IM_START) and text.endswith(IM_END)):
            return web.json_response({"error": {"message": "prompt is not wrapped in BAGEL turn markers"}}, status=400)
        prompt = text[len(IM_START):-len(IM_END)]
        png = draw(prompt, int(body["width"]), int(body["height"]), int(body["seed"]), defect_rate=0.7)
        url = "data:image/png;base64," + base64.b64encode(png).decode()
        content = [{"type": "image_url", "image_url": {"url": url}}]
        return web.json_response({
            "id": "chatcmpl-omni", "object": "chat.completion", "model": body.get("model", self.served[0]),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        })

    async def images(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("/v1/images/generations", body))
        self.ignored.extend(sorted(set(body) - OMNI_IMAGE_FIELDS))
        if body.get("response_format", "b64_json") != "b64_json":
            return vllm_bad_request(f"Only 'b64_json' response format is supported, got: {body['response_format']}")
        steps = body.get("num_inference_steps")
        if steps is not None and not 1 <= steps <= 200:
            return vllm_bad_request("num_inference_steps: Input should be between 1 and 200")
        if not 1 <= body.get("n", 1) <= 10:
            return vllm_bad_request("n: Input should be between 1 and 10")
        try:
            width, height = (int(v) for v in body["size"].split("x"))
        except (KeyError, ValueError):
            return vllm_bad_request("size must be in format 'WIDTHxHEIGHT' (e.g., '1024x1024')")
        png = draw(body["prompt"], width, height, int(body.get("seed") or 0), defect_rate=0.0)
        return web.json_response({"created": 1701234567,
                                  "data": [{"b64_json": base64.b64encode(png).decode(), "url": None,
                                            "revised_prompt": None}]})
