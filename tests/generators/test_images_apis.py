"""`images_api` against OpenAI's Images API and vLLM-Omni's: each gets only the fields it takes.

The servers (`fake_openai_images.py`, `fake_omni.py`) implement each API's documented request and
response shapes, including its answer to a field it does not take: OpenAI's 400
`unknown_parameter`, vLLM-Omni's silence (it drops the field). Not a live OpenAI or vLLM-Omni.
"""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.backends.base import BackendUnavailable, GeneratedImage, GenerateRequest
from curation.backends.generators.images_api import ImagesApiGenerator
from curation.run import main
from tests.generators.fake_omni import QWEN_IMAGE, FakeOmni
from tests.generators.fake_openai_images import FakeOpenAIImages
from tests.support.aio_server import ServerThread

KEY_ENV = "FAKE_OPENAI_KEY"
KEY = "sk-" + "fake-images-key"  # built at run time, so secret scanners leave it alone
FAST_HTTP = {"timeout_s": 10.0, "max_attempts": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}


@pytest.fixture(scope="module")
def openai():
    fake = FakeOpenAIImages(api_key=KEY)
    with ServerThread(fake.app()) as server:
        fake.url = f"{server.url}/v1"
        yield fake


@pytest.fixture(scope="module")
def omni():
    fake = FakeOmni()
    with ServerThread(fake.app()) as server:
        fake.url = f"{server.url}/v1"
        yield fake


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def openai_backend(fake, model: str, size: int = 1024, **params) -> ImagesApiGenerator:
    return ImagesApiGenerator(base_url=fake.url, api="openai", model=model, width=size, height=size, params=params,
                              api_key_env=KEY_ENV, http=FAST_HTTP)


def generate(backend, prompt: str = "a lighthouse at dusk", seed: int = 5):
    async def go():
        try:
            return await backend.generate(GenerateRequest(prompt=prompt, seed=seed, width=backend.width,
                                                          height=backend.height))
        finally:
            await backend.aclose()

    return asyncio.run(go())


def post(url: str, body: dict, key: str | None = KEY) -> tuple[int, dict]:
    """One raw request, as any client would send it (to show what the server answers)."""
    async def go():
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/images/generations", json=body, headers=headers) as response:
                return response.status, await response.json()

    return asyncio.run(go())


# ----------------------------------------------------------------------------- OpenAI


@pytest.mark.parametrize("model, size, params, fmt", [
    ("gpt-image-1", 1024, {"quality": "low", "output_format": "webp", "background": "opaque", "moderation": "low"},
     "WEBP"),
    ("gpt-image-1-mini", 1024, {"quality": "medium", "output_format": None}, "PNG"),  # null: not sent
    ("dall-e-3", 1024, {"quality": "hd", "style": "natural"}, "PNG"),
    ("dall-e-2", 256, {}, "PNG"),
])
def test_openai_models_get_only_their_fields_and_answer_with_an_image(openai, model, size, params, fmt):
    backend = openai_backend(openai, model, size, **params)
    backend.check()  # GET /models with the key: the model is there
    result = generate(backend)
    assert isinstance(result, GeneratedImage), result
    sent = openai.requests[-1]
    expected = {"model": model, "prompt": "a lighthouse at dusk", "n": 1, "size": f"{size}x{size}",
                **{k: v for k, v in params.items() if v is not None}}
    if model.startswith("dall-e"):
        expected["response_format"] = "b64_json"  # their default is a URL, which we never download
    assert sent == expected  # no seed, no response_format for the GPT image models
    with Image.open(io.BytesIO(result.image)) as image:  # the server's bytes, kept as they are
        assert (image.format, image.size) == (fmt, (size, size))
    settings = backend.identity()["settings"]
    assert settings["seed_sent"] is False and settings["api"].startswith("openai/")


def test_the_fake_openai_answers_unknown_fields_as_openai_does(openai):
    """What the old request (seed, response_format) got from a GPT image model: a 400 naming the field."""
    status, answer = post(openai.url, {"model": "gpt-image-1", "prompt": "a cat", "n": 1, "size": "1024x1024",
                                       "seed": 3, "response_format": "b64_json"})
    assert status == 400
    assert answer == {"error": {"message": "Unknown parameter: 'seed'.", "type": "invalid_request_error",
                                "param": "seed", "code": "unknown_parameter"}}
    status, answer = post(openai.url, {"model": "dall-e-2", "prompt": "a cat", "style": "vivid"})
    assert (status, answer["error"]["param"], answer["error"]["code"]) == (400, "style", "unknown_parameter")
    status, answer = post(openai.url, {"model": "dall-e-3", "prompt": "a cat", "size": "256x256"})
    assert (status, answer["error"]["code"]) == (400, "invalid_value")
    status, answer = post(openai.url, {"model": "dall-e-2", "prompt": "a cat"}, key="sk-wrong")
    assert (status, answer["error"]["code"]) == (401, "invalid_api_key")


@pytest.mark.parametrize("model, params, size, names", [
    ("gpt-image-1", {"style": "vivid"}, 1024, "'style'"),  # dall-e-3's field
    ("gpt-image-1", {"num_inference_steps": 50}, 1024, "'num_inference_steps'"),  # vLLM-Omni's field
    ("dall-e-3", {"output_format": "png"}, 1024, "'output_format'"),  # a GPT image model's field
    ("dall-e-2", {"style": "vivid"}, 256, "'style'"),
    ("gpt-image-1", {"seed": 1}, 1024, "params.seed"),  # set by the backend, never by params
    ("gpt-image-1", {"response_format": "url"}, 1024, "params.response_format"),
    ("gpt-image-1", {}, 96, "sizes"),  # gpt-image-1 draws three sizes
    ("dall-e-3", {}, 512, "sizes"),
    ("imagen-4", {}, 1024, "imagen-4"),  # a model whose fields api=openai does not know
])
def test_a_field_or_size_the_model_does_not_take_is_refused_when_built(openai, model, params, size, names):
    with pytest.raises(BackendUnavailable) as err:
        openai_backend(openai, model, size, **params)
    assert names in str(err.value) and "\n" not in str(err.value)


def test_openai_needs_a_model_and_a_key(openai, monkeypatch):
    with pytest.raises(BackendUnavailable, match="model is not set"):
        ImagesApiGenerator(base_url=openai.url, api="openai", model=None, api_key_env=KEY_ENV)
    with pytest.raises(BackendUnavailable, match="api_key_env"):
        ImagesApiGenerator(base_url=openai.url, api="openai", model="gpt-image-1")
    with pytest.raises(BackendUnavailable, match="not one of"):
        ImagesApiGenerator(base_url=openai.url, api="midjourney", model="gpt-image-1")
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    with pytest.raises(BackendUnavailable, match="401"):
        openai_backend(openai, "gpt-image-1").check()


# ----------------------------------------------------------------------------- vLLM-Omni


def test_vllm_omni_gets_its_fields_and_none_it_would_ignore(omni):
    backend = ImagesApiGenerator(base_url=omni.url, model=QWEN_IMAGE, width=64, height=48, http=FAST_HTTP,
                                 params={"num_inference_steps": 4, "true_cfg_scale": 4.0, "negative_prompt": "blur"})
    backend.check()
    before = len(omni.ignored)
    result = generate(backend, seed=77)
    assert isinstance(result, GeneratedImage)
    assert omni.requests[-1][1] == {"model": QWEN_IMAGE, "prompt": "a lighthouse at dusk", "n": 1, "size": "64x48",
                                    "response_format": "b64_json", "seed": 77, "num_inference_steps": 4,
                                    "true_cfg_scale": 4.0, "negative_prompt": "blur"}
    assert omni.ignored[before:] == []
    assert backend.identity()["settings"]["seed_sent"] is True


def test_a_field_vllm_omni_would_silently_drop_is_refused_when_built(omni):
    # The server would answer 200 and ignore it: the run would record a setting that was never used.
    status, _ = post(omni.url, {"prompt": "a cat", "size": "64x64", "cfg_text_scale": 4.0}, key=None)
    assert status == 200 and omni.ignored[-1] == "cfg_text_scale"
    status, answer = post(omni.url, {"prompt": "a cat", "size": "64x64", "response_format": "url"}, key=None)
    assert status == 400 and "b64_json" in answer["error"]["message"]
    for params in ({"cfg_text_scale": 4.0}, {"quality": "high"}):
        with pytest.raises(BackendUnavailable) as err:
            ImagesApiGenerator(base_url=omni.url, model=QWEN_IMAGE, params=params)
        assert "vllm_omni does not take" in str(err.value)


def test_vllm_omni_0_30_fields_are_sent_as_it_declares_them(omni):
    """flow_shift, output_compression, layers as they are; extra_args as 0.30's `extra_params` field."""
    params = {"num_inference_steps": 4, "flow_shift": 3.0, "output_compression": 80, "layers": 4,
              "extra_args": {"max_sequence_length": 512}}
    backend = ImagesApiGenerator(base_url=omni.url, model=QWEN_IMAGE, width=64, height=48, http=FAST_HTTP,
                                 params=params)
    before = len(omni.ignored)
    assert isinstance(generate(backend, seed=3), GeneratedImage)
    sent = omni.requests[-1][1]
    assert {k: sent[k] for k in ("flow_shift", "output_compression", "layers", "extra_params")} == {
        "flow_shift": 3.0, "output_compression": 80, "layers": 4, "extra_params": {"max_sequence_length": 512}}
    assert "extra_args" not in sent and omni.ignored[before:] == []
    # What the model receives as its extra_args: the mapping, with flow_shift laid over it.
    assert omni.image_extra_args[-1] == {"max_sequence_length": 512, "flow_shift": 3.0}
    # The reason for the wire name: 0.30's images request ignores a field named extra_args.
    status, _ = post(omni.url, {"prompt": "a cat", "size": "64x64", "extra_args": {"a": 1}}, key=None)
    assert status == 200 and omni.ignored[-1] == "extra_args" and omni.image_extra_args[-1] == {}


@pytest.mark.parametrize("params, names", [
    ({"vae_use_slicing": True}, "--vae-use-slicing"),  # applied only when the model starts
    ({"vae_use_tiling": True}, "--vae-use-tiling"),
    ({"extra_params": {"a": 1}}, "params.extra_args"),  # the deprecated name
    ({"flow_shift": 3.0, "extra_args": {"flow_shift": 5.0}}, "second time"),  # one key given twice
    ({"extra_args": {"seed": 1}}, "second time"),  # the backend's own field, again in extra_args
    ({"extra_args": [1, 2]}, "mapping"),
    ({"output_compression": 101}, "0..100"),
    ({"layers": 1}, "2..10"),
])
def test_vllm_omni_fields_it_would_ignore_or_refuse_are_refused_when_built(omni, params, names):
    with pytest.raises(BackendUnavailable) as err:
        ImagesApiGenerator(base_url=omni.url, model=QWEN_IMAGE, params=params)
    assert names in str(err.value) and "\n" not in str(err.value)


def test_the_fake_omni_answers_out_of_range_values_with_vllms_400(omni):
    for body in ({"output_compression": 101}, {"layers": 11}, {"extra_params": [1]}):
        status, answer = post(omni.url, {"prompt": "a cat", "size": "64x64", **body}, key=None)
        assert (status, answer["error"]["code"], answer["error"]["type"]) == (400, 400, "BadRequestError")


# ----------------------------------------------------------------------------- from the command line


def test_reference_openai_images_runs_a_recipe_by_configuration_alone(openai, tmp_path):
    before = len(openai.requests)
    out = main(["recipe=initial_full", "n=2", "image_size=96", "reference=openai_images",
                f"reference.base_url={openai.url}", "reference.model=dall-e-2", "reference.width=256",
                "reference.height=256", f"reference.api_key_env={KEY_ENV}", "reference.params.quality=standard",
                "reference.params.output_format=null", "checker=none", f"out={tmp_path / 'ds'}",
                f"cache={tmp_path / 'cache'}", "run.progress_interval_s=600"])
    sent = openai.requests[before:]
    assert len(sent) == 2 and all(set(body) == {"model", "prompt", "n", "size", "response_format", "quality"}
                                  for body in sent)
    table = pq.read_table(next((out / "data" / "initial_full_learning").glob("*.parquet")), columns=["lineage"])
    assert table.num_rows == 2
    for lineage in map(json.loads, table.column("lineage").to_pylist()):
        backend = lineage["stages"]["reference_image"]["backend"]
        assert backend["id"] == "dall-e-2" and backend["settings"]["seed_sent"] is False
    assert KEY not in (tmp_path / "ds").joinpath("README.md").read_text()
