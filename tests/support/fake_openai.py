"""A fake OpenAI-compatible chat endpoint: fixed latency, no concurrency limit, deterministic answers.

It answers `/v1/chat/completions` with a thinking in IRGL's format that is a pure function of the
request (its text, its images and its seed), so a run through faults can be compared with a clean
run byte for byte, and the answer names what the server received (a digest and the pixel size of
each image), so tests can see that the right images arrived at the right size. One image in the
request: an initial thinking; two: an improving thinking in the four-part format.

The server is a bare asyncio protocol (HTTP/1.1, keep-alive, Content-Length bodies) rather than
aiohttp.web: the throughput benchmark measures the *client*, and on a 2-core machine a server
spending 0.4 ms per request (aiohttp.web) would be the bottleneck instead of the client.

    python -m tests.support.fake_openai --latency 0.2      # prints "READY <port>", serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import sys

MODEL = "fake/qwen2.5-vl"
CHARS_PER_TOKEN = 4
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}


def _image_facts(url: str, inspect: bool) -> tuple[str, int, int]:
    payload = url.split(",", 1)[1] if url.startswith("data:") else url
    digest = hashlib.sha256(payload.encode()).hexdigest()[:10]
    if not inspect:
        return digest, 0, 0
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(payload))) as image:
        return digest, image.width, image.height


# What vLLM fills from the checkpoint's generation config when a request leaves a field out
# (`ModelConfig.get_diff_sampling_param`), and its own neutral value when the checkpoint says nothing.
VLLM_SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0,
                          "presence_penalty": 0.0, "frequency_penalty": 0.0}
# Qwen2.5-VL-7B-Instruct's generation_config.json, the fields vLLM reads from it.
QWEN25_VL_GENERATION_CONFIG = {"top_k": 1, "top_p": 0.001, "temperature": 0.1, "repetition_penalty": 1.05}


def effective_sampling(body: dict, generation_config: dict | None) -> dict:
    """The sampling a vLLM server applies: each field from the request, else the checkpoint's, else vLLM's."""
    return {name: body[name] if body.get(name) is not None else (generation_config or {}).get(name, default)
            for name, default in VLLM_SAMPLING_DEFAULTS.items()}


def prompt_parts(body: dict, inspect_images: bool) -> tuple[list[str], list[tuple[str, int, int]]]:
    texts, images = [], []
    for message in body["messages"]:
        content = message["content"]
        for part in ([{"type": "text", "text": content}] if isinstance(content, str) else content):
            if part["type"] == "text":
                texts.append(part["text"])
            elif part["type"] == "image_url":
                images.append(_image_facts(part["image_url"]["url"], inspect_images))
    return texts, images


def count_prompt_tokens(texts: list[str], images: list[tuple[str, int, int]]) -> int:
    return sum(len(t) for t in texts) // CHARS_PER_TOKEN + sum(w * h // (28 * 28) for _, w, h in images)


def write_answer(body: dict, inspect_images: bool, generation_config: dict | None = None) -> tuple[str, int]:
    """The deterministic thinking for a request, and the prompt's token count (text and images).

    The answer names the sample seed only when the server samples: a temperature of 0 or a top_k of
    1 — sent, or filled in from `generation_config` as vLLM does — is greedy decoding, one answer
    whatever the seed.
    """
    texts, images = prompt_parts(body, inspect_images)
    text_digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:10]
    sampling = effective_sampling(body, generation_config)
    greedy = sampling["temperature"] == 0 or sampling["top_k"] == 1
    seed = "greedy" if greedy else body.get("seed")
    prompt_tokens = count_prompt_tokens(texts, images)
    seen = "; ".join(f"picture {d} of {w}x{h} pixels" for d, w, h in images)
    if len(images) == 2:
        answer = (
            f"<think>\nThe previous picture {images[0][0]} misses details the request {text_digest} asks for "
            f"(sample seed {seed}; {seen}).\n"
            "### Detailed Explanation of Required Improvements:\n"
            "The lighting is flat, the colours are dull and the main object sits too far to the left.\n"
            "### Step-by-Step Modification Guidance:\n"
            "1. Move the main object to the centre. 2. Warm the light from the upper left. 3. Sharpen textures.\n"
            "### Final Comprehensive Prompt for the Improved Image:\n"
            f"The same scene, centred, warmly lit, crisp textures, style {images[1][0]}.\n</think>"
        )
    else:
        answer = (
            f"<think>\nPlan for the request {text_digest} with seed {seed} ({seen}): place the main "
            "object in the centre, light it softly from the left, keep the background simple and the "
            "colours saturated, then add fine texture.\n</think>"
        )
    return answer, prompt_tokens


class FakeOpenAI:
    """The endpoint's logic: `(method, path, headers, body) -> (status, JSON object)`."""

    def __init__(self, *, latency_s: float = 0.0, model: str = MODEL, api_key: str | None = None,
                 inspect_images: bool = True, generation_config: dict | None = None,
                 max_model_len: int | None = None):
        self.latency_s = latency_s
        self.model = model
        self.api_key = api_key
        self.inspect_images = inspect_images
        self.generation_config = generation_config  # fills omitted sampling fields, as vLLM does
        self.max_model_len = max_model_len  # as `vllm serve --max-model-len`: listed, enforced, /tokenize
        self.requests = 0  # chat completions answered
        self.bodies: list[dict] = []  # every chat request received, parsed

    def _too_long(self, prompt_tokens: int) -> dict:
        """vLLM 0.32's answer to a prompt over max_model_len once its images are counted: the engine's
        input processor raises VLLMValidationError without a parameter, so `param` is null."""
        return {"error": {"message": f"The decoder prompt (length {prompt_tokens}) is longer than the maximum model "
                                     f"length of {self.max_model_len}. Make sure that `max_model_len` is no smaller "
                                     "than the number of text tokens plus multimodal tokens.",
                          "type": "BadRequestError", "param": None, "code": 400}}

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": {"message": "invalid api key"}}
        if method == "GET" and path == "/v1/models":
            card = {"id": self.model, "object": "model"}
            if self.max_model_len is not None:
                card["max_model_len"] = self.max_model_len
            return 200, {"object": "list", "data": [card]}
        if method == "POST" and path == "/tokenize" and self.max_model_len is not None:
            count = count_prompt_tokens(*prompt_parts(json.loads(body), self.inspect_images))
            return 200, {"count": count, "max_model_len": self.max_model_len, "tokens": list(range(count))}
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}
        if method != "POST":
            return 405, {"error": {"message": "use POST"}}
        request = json.loads(body)
        if request.get("model") != self.model:
            return 404, {"error": {"message": f"the model {request.get('model')!r} does not exist"}}
        self.bodies.append(request)
        if self.max_model_len is not None:
            max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
            if max_tokens is not None and max_tokens > self.max_model_len:  # vLLM 0.32: TokenizeParams
                return 400, {"error": {"message": f"max_tokens={max_tokens} cannot be greater than max_model_len="
                                                  f"{self.max_model_len}. Please request fewer output tokens.",
                                       "type": "BadRequestError", "param": "max_tokens", "code": 400}}
            prompt_tokens = count_prompt_tokens(*prompt_parts(request, self.inspect_images))
            if prompt_tokens >= self.max_model_len:
                return 400, self._too_long(prompt_tokens)
        self.requests += 1
        answer, prompt_tokens = write_answer(request, self.inspect_images, self.generation_config)
        finish = "stop"
        max_tokens = request.get("max_tokens")
        if max_tokens is not None and len(answer) > max_tokens * CHARS_PER_TOKEN:
            answer, finish = answer[: max_tokens * CHARS_PER_TOKEN], "length"
        completion_tokens = -(-len(answer) // CHARS_PER_TOKEN)
        return 200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def protocol(self) -> "_HttpProtocol":
        return _HttpProtocol(self)


class _HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and Content-Length bodies: all an API client sends."""

    def __init__(self, endpoint: FakeOpenAI):
        self.endpoint = endpoint
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", 0))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            status, data = self.endpoint.answer(method, path, headers, body)
            delay = self.endpoint.latency_s if path.endswith("/chat/completions") else 0.0
            self.loop.call_later(delay, self._respond, status, data, headers.get("connection") == "close")

    def _respond(self, status: int, data: dict, close: bool) -> None:
        if self.transport is None:  # the client gave up (time-out) before the answer was due
            return
        payload = json.dumps(data).encode()
        self.transport.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        if close:
            self.transport.close()


async def serve(endpoint: FakeOpenAI, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    return await asyncio.get_running_loop().create_server(endpoint.protocol, host, port, backlog=4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to every answer")
    parser.add_argument("--no-inspect", action="store_true", help="hash images without decoding them")
    args = parser.parse_args()

    async def run() -> None:
        server = await serve(FakeOpenAI(latency_s=args.latency, inspect_images=not args.no_inspect), port=args.port)
        print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
