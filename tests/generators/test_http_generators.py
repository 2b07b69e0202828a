"""`generator=bagel_omni` and `generator|reference=images_api` against a server speaking vLLM-Omni's
documented formats (`fake_omni.py`), directly and through the shared fault proxy.

These test the documented request/response format, not a live vLLM-Omni.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket

import aiohttp
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.backends.base import BackendUnavailable, GeneratedImage, GenerateRequest
from curation.backends.generators.bagel_omni import BagelOmniGenerator
from curation.backends.generators.images_api import ImagesApiGenerator
from curation.backends.http import ServerRefused
from curation.core.config import load_config
from curation.core.records import Reject
from curation.run import main
from tests.generators.fake_omni import BAGEL, QWEN_IMAGE, FakeOmni
from tests.support.aio_server import ServerThread
from tests.support.fault_proxy import FaultProxy, Hang, MalformedJSON, Reset, Rewrite, Status, per_body

FAST_HTTP = {"timeout_s": 2.0, "max_attempts": 4, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
PROMPT = "a photo of two red balls, on a wooden table"


@pytest.fixture(scope="module")
def omni():
    fake = FakeOmni()
    with ServerThread(fake.app()) as server:
        fake.url = server.url
        yield fake


def guidance(**changes) -> dict:
    """BAGEL's guidance settings as the recipes define them, with `changes`."""
    return {**load_config("config", ["generator=bagel_omni"]).generator.guidance, **changes}


def bagel(api_root: str, **kw) -> BagelOmniGenerator:
    node = load_config("config", ["generator=bagel_omni"]).generator
    return BagelOmniGenerator(base_url=api_root, model=kw.pop("model", BAGEL), width=96, height=96,
                              guidance=kw.pop("guidance", guidance(num_timesteps=7)),
                              thinker_sampling=kw.pop("thinker_sampling", dict(node.thinker_sampling)),
                              http=kw.pop("http", FAST_HTTP), **kw)


def images_api(api_root: str, **kw) -> ImagesApiGenerator:
    return ImagesApiGenerator(base_url=api_root, model=kw.pop("model", QWEN_IMAGE), width=128, height=96,
                              params={"num_inference_steps": 9, **kw.pop("params", {})},
                              http=kw.pop("http", FAST_HTTP), **kw)


def generate(backend, prompt: str = PROMPT, seed: int = 11):
    async def go():
        try:
            return await backend.generate(GenerateRequest(prompt=prompt, seed=seed, width=backend.width,
                                                          height=backend.height))
        finally:
            await backend.aclose()

    return asyncio.run(go())


def last_request(fake: FakeOmni, path: str) -> dict:
    return next(body for p, body in reversed(fake.requests) if p == path)


# ----------------------------------------------------------------------------- the documented request


def test_bagel_omni_sends_the_documented_chat_request(omni):
    backend = bagel(f"{omni.url}/v1")
    backend.check()
    result = generate(backend, seed=1234)
    assert isinstance(result, GeneratedImage)
    sent = last_request(omni, "/v1/chat/completions")
    assert sent["modalities"] == ["image"]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text",
                                                              "text": f"<|im_start|>{PROMPT}<|im_end|>"}]}]
    assert (sent["height"], sent["width"], sent["num_inference_steps"], sent["seed"]) == (96, 96, 7, 1234)
    assert sent["model"] == BAGEL
    # Every guidance setting is sent explicitly: the server's own defaults never decide.
    assert {k: sent[k] for k in ("cfg_text_scale", "cfg_img_scale", "cfg_interval", "cfg_renorm_type",
                                 "cfg_renorm_min", "timestep_shift")} == {
        "cfg_text_scale": 4.0, "cfg_img_scale": 1.0, "cfg_interval": [0.4, 1.0], "cfg_renorm_type": "global",
        "cfg_renorm_min": 0.0, "timestep_shift": 3.0}
    assert "negative_prompt" not in sent
    # The seed, steps and guidance also go in the DiT's own entry of the per-stage list (vLLM-Omni 0.30).
    thinker, dit = sent["sampling_params_list"]
    assert thinker == {"temperature": 0.4, "top_p": 0.9, "top_k": 1, "max_tokens": 2048, "detokenize": True,
                       "repetition_penalty": 1.05, "seed": 1234}
    assert dit == {"seed": 1234, "num_inference_steps": 7, "extra_args": {
        "cfg_text_scale": 4.0, "cfg_img_scale": 1.0, "cfg_interval": [0.4, 1.0], "cfg_renorm_type": "global",
        "cfg_renorm_min": 0.0, "timestep_shift": 3.0}}
    with Image.open(io.BytesIO(result.image)) as img:  # the server's bytes, kept as they are
        assert (img.format, img.size) == ("PNG", (96, 96))
    # What was sent for the seed; attempts and latency are accounting (summary), not lineage.
    assert result.lineage == {"seed": 1234, "stage_seeds": [1234, 1234]}


def chat_image(omni, body: dict) -> bytes:
    """One raw chat request to the fake; the image bytes it answers with."""
    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{omni.url}/v1/chat/completions", json=body) as response:
                assert response.status == 200, await response.text()
                answer = await response.json()
        url = answer["choices"][0]["message"]["content"][0]["image_url"]["url"]
        return base64.b64decode(url.partition(",")[2])

    return asyncio.run(go())


def test_the_seed_reaches_the_stage_that_draws(omni):
    """vLLM-Omni 0.30 serves BAGEL as thinker + DiT; a top-level seed reaches only the thinker."""
    backend = bagel(f"{omni.url}/v1")
    before = len(omni.dit_requests)
    first, again, other = (generate(bagel(f"{omni.url}/v1"), seed=s) for s in (101, 101, 202))
    assert first.image == again.image  # same seed, same bytes
    assert first.image != other.image  # one prompt, two seeds: two images
    dit = omni.dit_requests[before:]
    assert [d["seed"] for d in dit] == [101, 101, 202]  # each DiT request carries its sample's own seed
    expected = backend.guidance_fields()
    steps = expected.pop("num_inference_steps")
    assert all(d["num_inference_steps"] == steps and d["extra_args"] == expected for d in dit)
    # The request before this fix (seed and guidance top-level only): the DiT kept its deploy seed 52.
    old = {k: v for k, v in backend.payload(GenerateRequest(PROMPT, 101, 96, 96)).items()
           if k != "sampling_params_list"}
    before = len(omni.dit_requests)
    assert chat_image(omni, old) == chat_image(omni, {**old, "seed": 202})
    assert [d["seed"] for d in omni.dit_requests[before:]] == [52, 52]
    assert omni.dit_requests[-1]["extra_args"] == expected  # the guidance did reach it, from the top level


def test_a_guidance_key_given_twice_is_the_servers_400(omni):
    body = bagel(f"{omni.url}/v1").payload(GenerateRequest(PROMPT, 1, 96, 96))
    with pytest.raises(AssertionError, match="400"):
        chat_image(omni, {**body, "extra_args": {"cfg_text_scale": 2.0}})  # also at the top level
    with pytest.raises(BackendUnavailable, match="thinker_sampling.seed"):
        bagel(f"{omni.url}/v1", thinker_sampling={"seed": 3})


def test_images_api_sends_the_documented_request(omni):
    backend = images_api(f"{omni.url}/v1", params={"guidance_scale": None, "negative_prompt": "blurry"})
    backend.check()
    result = generate(backend, prompt="a lighthouse at dusk", seed=99)
    assert isinstance(result, GeneratedImage)
    sent = last_request(omni, "/v1/images/generations")
    assert sent == {"prompt": "a lighthouse at dusk", "size": "128x96", "n": 1, "seed": 99,
                    "response_format": "b64_json", "model": QWEN_IMAGE, "num_inference_steps": 9,
                    "negative_prompt": "blurry"}  # null knobs (guidance_scale) are not sent
    assert omni.ignored == []  # nothing vLLM-Omni would silently drop
    with Image.open(io.BytesIO(result.image)) as img:
        assert img.size == (128, 96)


def test_seed_and_settings_are_in_the_identity_and_lineage(omni):
    backend = bagel(f"{omni.url}/v1")
    assert backend.identity()["settings"]["num_timesteps"] == 7
    assert bagel(f"{omni.url}/v1", guidance=guidance(num_timesteps=8)).identity() != backend.identity()
    assert bagel(f"{omni.url}/v1", guidance=guidance(num_timesteps=7, cfg_img_scale=1.5)).identity() != \
        backend.identity()
    assert "url" not in json.dumps(backend.identity())  # moving the server keeps every cached result


# ----------------------------------------------------------------------------- start-up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("make", [bagel, images_api])
def test_start_up_fails_with_one_sentence(omni, make, monkeypatch):
    cases = [
        make(f"http://127.0.0.1:{free_port()}/v1"),  # nothing listens there
        make(f"{omni.url}/v1", model="someone/else"),  # the server serves another model
        make(omni.url),  # not the API root: GET /models is a 404
    ]
    for backend in cases:
        with pytest.raises(BackendUnavailable) as err:
            backend.check()
        assert "\n" not in str(err.value)
    monkeypatch.delenv("OMNI_TEST_KEY", raising=False)
    with pytest.raises(BackendUnavailable):
        make(f"{omni.url}/v1", api_key_env="OMNI_TEST_KEY")  # the key's variable is not set


def test_a_refused_key_fails_at_start_up():
    fake = FakeOmni(api_key="secret")
    with ServerThread(fake.app()) as server:
        with pytest.raises(BackendUnavailable) as err:
            bagel(f"{server.url}/v1").check()
        assert "401" in str(err.value)


# ----------------------------------------------------------------------------- faults, through the proxy


def through_proxy(omni, make, plan, **kw):
    with FaultProxy(f"{omni.url}", plan) as proxy:
        backend = make(f"{proxy.url}/v1", **kw)
        result = generate(backend)
        generations = [name for call, name in proxy.log if not call.path.endswith("/models")]
    return result, generations


@pytest.mark.parametrize("make, path", [(bagel, "/chat/completions"), (images_api, "/images/generations")])
@pytest.mark.parametrize("faults", [
    [Status(429, retry_after=0.05)],
    [Status(503), Status(500)],
    [Reset()],
    [Hang(5.0)],  # longer than the 2 s time-out
    [MalformedJSON()],
], ids=["rate_limited", "server_errors", "dropped_connection", "timeout", "malformed_json"])
def test_transient_faults_are_retried_until_the_image_comes(omni, make, path, faults):
    result, log = through_proxy(omni, make, per_body(faults, path=path))
    assert isinstance(result, GeneratedImage), result
    assert log == [f.name for f in faults] + ["pass"]
    assert "attempts" not in result.lineage and "latency_s" not in result.lineage


@pytest.mark.parametrize("make, path", [(bagel, "/chat/completions"), (images_api, "/images/generations")])
def test_a_server_that_keeps_failing_gives_a_transient_reject(omni, make, path):
    result, log = through_proxy(omni, make, per_body([Status(500)] * 10, path=path))
    assert isinstance(result, Reject)
    assert (result.reason, result.transient) == ("server_error", True)
    assert len(log) == FAST_HTTP["max_attempts"]


@pytest.mark.parametrize("make, path", [(bagel, "/chat/completions"), (images_api, "/images/generations")])
def test_a_bad_request_is_not_retried_and_stops_the_run(omni, make, path):
    """A 400 that names no sample-specific cause (an unknown parameter …) would refuse every request alike."""
    with pytest.raises(ServerRefused, match="HTTP 400") as caught:
        through_proxy(omni, make, per_body([Status(400)] * 10, path=path))
    assert "\n" not in str(caught.value)


def _bad_png() -> str:
    return base64.b64encode(b"\x89PNG\r\n\x1a\n not really").decode()


CHAT_REWRITES = {
    "no_image": lambda d: {**d, "choices": [{"index": 0, "message": {"role": "assistant", "content": "no picture"}}]},
    "bad_image_data": lambda d: _set_url(d, "data:image/png;base64,@@@not base64@@@"),
    "undecodable_image": lambda d: _set_url(d, "data:image/png;base64," + _bad_png()),
}
IMAGES_REWRITES = {
    "no_image": lambda d: {**d, "data": []},
    "bad_image_data": lambda d: {**d, "data": [{"b64_json": "@@@"}]},
    "undecodable_image": lambda d: {**d, "data": [{"b64_json": _bad_png()}]},
}


def _set_url(data: dict, url: str) -> dict:
    data["choices"][0]["message"]["content"][0]["image_url"]["url"] = url
    return data


@pytest.mark.parametrize("make, path, rewrites", [(bagel, "/chat/completions", CHAT_REWRITES),
                                                  (images_api, "/images/generations", IMAGES_REWRITES)])
@pytest.mark.parametrize("reason", ["no_image", "bad_image_data", "undecodable_image"])
def test_answers_without_a_usable_image_are_rejected_with_their_reason(omni, make, path, rewrites, reason):
    result, log = through_proxy(omni, make, per_body([Rewrite(reason, rewrites[reason])], path=path))
    assert isinstance(result, Reject)
    assert (result.reason, result.transient) == (reason, False)  # the stage stamps its own name
    assert log == [reason]


# ----------------------------------------------------------------------------- from the command line


def test_bagel_omni_and_images_api_run_a_recipe_from_the_command_line(omni, tmp_path):
    """Offline prompts; reference images from `reference=images_api`; initial images from BAGEL on vLLM-Omni."""
    before = len(omni.requests)
    out = main(["recipe=improving_full", "n=3", "image_size=96", "generator=bagel_omni",
                f"generator.base_url={omni.url}/v1", "generator.width=96", "generator.height=96",
                "generator.guidance.num_timesteps=4", "reference=images_api", f"reference.base_url={omni.url}/v1",
                f"reference.model={QWEN_IMAGE}", "reference.width=96", "reference.height=96", "checker=none",
                f"out={tmp_path / 'ds'}", f"cache={tmp_path / 'cache'}", "run.progress_interval_s=600"])
    sent = omni.requests[before:]
    assert sorted(p for p, _ in sent) == ["/v1/chat/completions"] * 3 + ["/v1/images/generations"] * 3
    table = pq.read_table(next((out / "data" / "improving_full_learning").glob("*.parquet")), columns=["lineage"])
    assert table.num_rows == 3
    seeds_sent = {body["sampling_params_list"][1]["seed"] for p, body in sent if p == "/v1/chat/completions"}
    assert len(seeds_sent) == 3  # one seed per sample, each sent to the DiT
    for lineage in map(json.loads, table.column("lineage").to_pylist()):
        initial = lineage["stages"]["initial_image"]
        assert initial["backend"]["id"] == BAGEL
        assert initial["seed"] in seeds_sent  # recorded, so the image can be regenerated
