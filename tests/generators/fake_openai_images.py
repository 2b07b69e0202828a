"""A fake of OpenAI's Images API (`POST /v1/images/generations`), as its API reference documents it.

Written from OpenAI's reference, per model family, independently of the backend's own table, so a
test against it checks the backend's table against the documentation:

- GPT image models (`gpt-image-1`, `gpt-image-1-mini`): `prompt`, `model`, `n`, `size` (1024x1024,
  1536x1024, 1024x1536, auto), `quality` (low, medium, high, auto), `background` (transparent,
  opaque, auto), `moderation` (low, auto), `output_format` (png, jpeg, webp), `output_compression`
  (0..100), `user`, `stream`, `partial_images`. No `response_format`: always `data[0].b64_json`,
  plus `usage`, `size`, `quality`, `background`, `output_format` in the answer.
- `dall-e-3`: `prompt`, `model`, `n` (1 only), `size` (1024x1024, 1792x1024, 1024x1792), `quality`
  (standard, hd), `style` (vivid, natural), `response_format` (url — the default — or b64_json), `user`;
  each datum carries a `revised_prompt`.
- `dall-e-2` (the default model when none is named): `prompt`, `model`, `n`, `size` (256x256,
  512x512, 1024x1024), `quality` (standard), `response_format`, `user`.

A field the model does not take is a 400 in OpenAI's error shape:
`{"error": {"message": "Unknown parameter: 'seed'.", "type": "invalid_request_error",
"param": "seed", "code": "unknown_parameter"}}`; a value it does not take is the same with
`"code": "invalid_value"`; a missing or wrong key is a 401 (`invalid_api_key`).
"""

from __future__ import annotations

import base64
import io

from aiohttp import web
from PIL import Image

from tests.generators.fake_omni import draw

GPT_IMAGE = {
    "fields": {"prompt", "model", "n", "size", "quality", "background", "moderation", "output_format",
               "output_compression", "user", "stream", "partial_images"},
    "values": {"size": {"1024x1024", "1536x1024", "1024x1536", "auto"}, "quality": {"low", "medium", "high", "auto"},
               "background": {"transparent", "opaque", "auto"}, "moderation": {"low", "auto"},
               "output_format": {"png", "jpeg", "webp"}},
}
MODELS = {
    "gpt-image-1": GPT_IMAGE,
    "gpt-image-1-mini": GPT_IMAGE,
    "dall-e-3": {
        "fields": {"prompt", "model", "n", "size", "quality", "style", "response_format", "user"},
        "values": {"size": {"1024x1024", "1792x1024", "1024x1792"}, "quality": {"standard", "hd"},
                   "style": {"vivid", "natural"}, "response_format": {"url", "b64_json"}, "n": {1}},
    },
    "dall-e-2": {
        "fields": {"prompt", "model", "n", "size", "quality", "response_format", "user"},
        "values": {"size": {"256x256", "512x512", "1024x1024"}, "quality": {"standard"},
                   "response_format": {"url", "b64_json"}},
    },
}
LISTED = [*MODELS, "gpt-4o", "text-embedding-3-small"]  # /models lists every model of the account


def openai_error(status: int, message: str, param: str | None, code: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                         "code": code}}, status=status)


class FakeOpenAIImages:
    def __init__(self, api_key: str):
        self.api_key = api_key
        self.requests: list[dict] = []  # every generation request body, accepted or not

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/images/generations", self.generate)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return openai_error(401, "Incorrect API key provided.", None, "invalid_api_key")
        return await handler(request)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model", "created": 1698785189,
                                                              "owned_by": "system"} for m in LISTED]})

    async def generate(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        model = body.get("model", "dall-e-2")
        spec = MODELS.get(model)
        if spec is None:
            return openai_error(400, f"Invalid value: '{model}'. Value must be an image model.", "model",
                                "invalid_value")
        for name in body:  # in body order, like the real API: the first unknown one is named
            if name not in spec["fields"]:
                return openai_error(400, f"Unknown parameter: '{name}'.", name, "unknown_parameter")
        for name, allowed in spec["values"].items():
            if name in body and body[name] not in allowed:
                return openai_error(400, f"Invalid value: '{body[name]}'. Supported values are: "
                                         f"{', '.join(repr(v) for v in sorted(allowed, key=str))}.", name,
                                    "invalid_value")
        size = body.get("size", "1024x1024")
        width, height = (1024, 1024) if size == "auto" else (int(v) for v in size.split("x"))
        png = draw(body["prompt"], width, height, seed=len(body["prompt"]), defect_rate=0.0)
        if spec is GPT_IMAGE:
            fmt = body.get("output_format", "png")
            data = png if fmt == "png" else _reencode(png, fmt)
            return web.json_response({
                "created": 1713833628, "background": body.get("background", "opaque"), "output_format": fmt,
                "quality": body.get("quality", "high"), "size": f"{width}x{height}",
                "data": [{"b64_json": base64.b64encode(data).decode()}],
                "usage": {"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210,
                          "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}}})
        datum: dict = ({"b64_json": base64.b64encode(png).decode()} if body.get("response_format") == "b64_json"
                       else {"url": "https://oaidalleapiprodscus.blob.core.windows.net/private/img.png"})
        if model == "dall-e-3":
            datum["revised_prompt"] = body["prompt"]
        return web.json_response({"created": 1713833628, "data": [datum]})


def _reencode(png: bytes, fmt: str) -> bytes:
    buf = io.BytesIO()
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").save(buf, format="JPEG" if fmt == "jpeg" else "WEBP")
    return buf.getvalue()
