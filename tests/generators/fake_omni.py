"""A fake vLLM-Omni 0.30 server speaking its request/response formats, for the HTTP generator tests.

- `GET  /v1/models`             -> `{"data": [{"id": <model>}]}`
- `POST /v1/chat/completions`   -> BAGEL text-to-image, served as vLLM-Omni 0.30 serves it: TWO stages
  (`vllm_omni/deploy/bagel.yaml`): stage 0 the thinker, stage 1 the DiT that draws, each with its deploy
  defaults (`seed: 52` in both). The per-stage parameters are built as `serving_chat.py` builds them:
  without a request `sampling_params_list`, stage 0 is its defaults with the request's top-level OpenAI
  sampling fields (`seed`, `temperature` …) and stage 1 a copy of its defaults; with one, each entry
  replaces its stage's defaults (missing tail stages keep theirs). Then size and `num_inference_steps`
  are copied onto the DiT, and the fields BAGEL's extras declare (`cfg_*`, `timestep_shift` …) given
  at the top level or in `extra_args` / the deprecated `extra_params` are laid over the DiT's
  `extra_args`; a key given in two of those places is vLLM-Omni's 400 ("provided more than once").
  The DiT draws with ITS OWN seed (the deploy's 52 unless the request's list sent one). Every set
  of parameters the DiT stage receives is kept in `dit_requests`. The image comes back as a PNG data
  URI in `choices[0].message.content[0].image_url.url`.
- `POST /v1/images/generations` -> 0.30's `ImageGenerationRequest`: `prompt`, `size` "WxH", `n`, `seed`,
  `response_format` (`b64_json`; `file` is a binary answer this fake does not serve), `flow_shift`,
  `extra_params` (the model's `extra_args`), `output_compression` (0..100), `layers` (2..10) and its other
  diffusion fields; the image comes back as `data[0].b64_json`. Like the real one (a pydantic model with
  the default `extra="ignore"`), it IGNORES a field it does not declare (`extra_args` included), without
  an error; the fake records such fields in `ignored`, so tests can check that a backend never sends a
  field that would silently do nothing. What a single-stage model would receive as `extra_args`
  (`extra_params`, then `flow_shift` over it) is kept in `image_extra_args`. Values it validates get
  vLLM's 400: `{"error": {"message", "type", "param", "code": 400}}`.

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
# The fields of vLLM-Omni 0.30's ImageGenerationRequest (vllm_omni/entrypoints/openai/protocol/images.py).
OMNI_IMAGE_FIELDS = {"prompt", "bot_task", "model", "n", "size", "response_format", "user", "layers",
                     "negative_prompt", "system_prompt", "use_system_prompt", "num_inference_steps", "guidance_scale",
                     "true_cfg_scale", "flow_shift", "extra_params", "seed", "generator_device", "lora",
                     "vae_use_slicing", "vae_use_tiling", "output_format", "output_compression",
                     "return_stage_metrics"}
# BAGEL's two stages and their deploy defaults (vllm_omni/deploy/bagel.yaml in 0.30).
THINKER_DEFAULTS = {"temperature": 0.4, "top_p": 0.9, "top_k": 1, "max_tokens": 2048, "seed": 52,
                    "detokenize": True, "repetition_penalty": 1.05}
DIT_DEFAULTS = {"seed": 52}
# The top-level chat fields applied to stage 0 (serving_chat.py, _OPENAI_SAMPLING_FIELDS).
OPENAI_SAMPLING_FIELDS = {"temperature", "top_p", "top_k", "max_tokens", "min_tokens", "seed", "ignore_eos", "stop",
                          "stop_token_ids", "frequency_penalty", "presence_penalty"}
# The request fields BAGEL's extras declare (model_extras/bagel.py), less `negative_prompt`, which the
# chat route keeps as one of its own fields: these go into the DiT's extra_args.
BAGEL_DECLARED = {"cfg_text_scale", "cfg_img_scale", "cfg_interval", "cfg_renorm_type", "cfg_renorm_min", "think",
                  "max_think_tokens", "do_sample", "text_temperature", "timestep_shift"}
# Fields of the stage parameter classes a per-stage entry may set (vLLM's SamplingParams and
# OmniDiffusionSamplingParams: the ones these tests use); anything else is the TypeError of
# `cls(**entry)`, which the route does not catch (HTTP 500).
THINKER_FIELDS = OPENAI_SAMPLING_FIELDS | {"detokenize", "repetition_penalty", "n", "extra_args"}
DIT_FIELDS = {"seed", "height", "width", "num_inference_steps", "guidance_scale", "true_cfg_scale", "extra_args",
              "generator_device", "num_outputs_per_prompt"}


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
        self.dit_requests: list[dict] = []  # the parameters the DiT stage drew each chat image with
        self.image_extra_args: list[dict] = []  # what a single-stage model got as extra_args, per image request

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
        try:
            extra = self.dit_extra_args(body)
        except ValueError as exc:
            return vllm_bad_request(str(exc))
        stages = self.stage_params(body)
        if stages is None:
            return web.Response(status=500, text="Internal Server Error")
        dit = stages[1]
        # The override loop: size and steps onto the DiT, the declared extras over its extra_args.
        dit["height"], dit["width"] = int(body["height"]), int(body["width"])
        if body.get("num_inference_steps") is not None:
            dit["num_inference_steps"] = int(body["num_inference_steps"])
        dit["extra_args"] = {**(dit.get("extra_args") or {}), **extra}
        self.dit_requests.append(dit)
        seed = dit.get("seed")  # None: the pipeline seeds nothing, so fresh noise
        png = draw(prompt, dit["width"], dit["height"], int(np.random.default_rng().integers(2**31)) if seed is None
                   else int(seed), defect_rate=0.7)
        url = "data:image/png;base64," + base64.b64encode(png).decode()
        content = [{"type": "image_url", "image_url": {"url": url}}]
        return web.json_response({
            "id": "chatcmpl-omni", "object": "chat.completion", "model": body.get("model", self.served[0]),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        })

    @staticmethod
    def stage_params(body: dict) -> list[dict] | None:
        """Stage 0's and stage 1's parameters, as 0.30's chat route builds them (None: its uncaught TypeError)."""
        entries = body.get("sampling_params_list")
        if entries is None:
            thinker = {**THINKER_DEFAULTS, **{k: body[k] for k in OPENAI_SAMPLING_FIELDS if body.get(k) is not None}}
            return [thinker, dict(DIT_DEFAULTS)]
        stages = []
        for i, (defaults, fields) in enumerate(((THINKER_DEFAULTS, THINKER_FIELDS), (DIT_DEFAULTS, DIT_FIELDS))):
            if i >= len(entries):
                stages.append(dict(defaults))  # a tail stage the list leaves out keeps its deploy defaults
            elif set(entries[i]) - fields:
                return None
            else:
                stages.append(dict(entries[i]))  # replaces the defaults: no seed 52 unless sent
        return stages

    @staticmethod
    def dit_extra_args(body: dict) -> dict:
        """The declared fields from the top level, `extra_args` and `extra_params`; a key in two is a 400."""
        sources = {"request": {k: body[k] for k in BAGEL_DECLARED if k in body}}
        for name in ("extra_args", "extra_params"):
            value = body.get(name)
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{name} must be a JSON object.")
            sources[f"request.{name}"] = value or {}
        seen: dict[str, list[str]] = {}
        for prefix, values in sources.items():
            for key in values:
                seen.setdefault(key, []).append(f"{prefix}.{key}")
        twice = {k: v for k, v in seen.items() if len(v) > 1}
        if twice:
            details = "; ".join(f'"{k}": {", ".join(twice[k])}' for k in sorted(twice))
            raise ValueError(f"Diffusion request parameters were provided more than once: {details}.")
        merged = {k: v for values in sources.values() for k, v in values.items()}
        return {k: v for k, v in merged.items() if v is not None}

    async def images(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("/v1/images/generations", body))
        self.ignored.extend(sorted(set(body) - OMNI_IMAGE_FIELDS))
        if body.get("response_format", "b64_json") != "b64_json":
            return vllm_bad_request(f"Only 'b64_json' or 'file' response format is supported, got: "
                                    f"{body['response_format']}")
        steps = body.get("num_inference_steps")
        if steps is not None and not 1 <= steps <= 200:
            return vllm_bad_request("num_inference_steps: Input should be between 1 and 200")
        if not 1 <= body.get("n", 1) <= 10:
            return vllm_bad_request("n: Input should be between 1 and 10")
        if not 0 <= body.get("output_compression", 100) <= 100:
            return vllm_bad_request("output_compression: Input should be between 0 and 100")
        layers = body.get("layers")
        if layers is not None and not 2 <= layers <= 10:
            return vllm_bad_request(f"Invalid layers value {layers}. layers must be between 2 and 10 inclusive.")
        if body.get("extra_params") is not None and not isinstance(body["extra_params"], dict):
            return vllm_bad_request("extra_params: Input should be a valid dictionary")
        try:
            width, height = (int(v) for v in body["size"].split("x"))
        except (KeyError, ValueError):
            return vllm_bad_request("size must be in format 'WIDTHxHEIGHT' (e.g., '1024x1024')")
        # A single-stage model's extra_args: extra_params, then flow_shift over it (api_server.py).
        extra_args = dict(body.get("extra_params") or {})
        if body.get("flow_shift") is not None:
            extra_args["flow_shift"] = body["flow_shift"]
        self.image_extra_args.append(extra_args)
        png = draw(body["prompt"], width, height, int(body.get("seed") or 0), defect_rate=0.0)
        return web.json_response({"created": 1701234567,
                                  "data": [{"b64_json": base64.b64encode(png).decode(), "url": None,
                                            "revised_prompt": None}]})
