"""Sampling is fully specified: every field that picks tokens is sent by each model teacher, so a
checkpoint's generation config (Qwen2.5-VL's says top_k 1: greedy) can fill none of them, and the
fields mean the same for all three teachers — in their identity, so in every row's lineage."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from hydra.utils import instantiate
from PIL import Image

from curation.backends.base import BackendUnavailable, ImageInput, InitialThinkingRequest
from curation.backends.teachers.prompting import Sampling
from curation.core.config import load_config
from curation.pipeline.stages.base import derive_seed
from tests.helpers import build
from tests.support import stand_in_vllm
from tests.support.aio_server import ServerThread
from tests.support.fake_openai import MODEL, QWEN25_VL_GENERATION_CONFIG, FakeOpenAI
from tests.support.tiny_qwen import build_tiny_qwen25_vl
from tests.teacher.helpers import rows, server_teacher

MODE = "initial_thinking_generation_learning"
RECIPE_SAMPLING = {"temperature": 0.7, "top_p": 0.9, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0,
                   "max_tokens": 2048}


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_a_server_filling_omitted_fields_from_the_checkpoint_samples_only_for_the_full_request(tmp_path):
    # Like vLLM: what a request leaves out comes from the checkpoint's generation config (top_k 1).
    endpoint = FakeOpenAI(generation_config=QWEN25_VL_GENERATION_CONFIG)
    with ServerThread(endpoint.protocol) as server:
        messages = [{"role": "user", "content": [{"type": "text", "text": "Plan a picture of a red ball."}]}]
        old = [_post(server.url, {"model": MODEL, "messages": messages, "temperature": 0.7, "top_p": 0.9,
                                  "max_tokens": 2048, "seed": seed})["choices"][0]["message"]["content"]
               for seed in (1, 2)]
        # The request as the teacher used to make it: two seeds, one greedy answer.
        assert old[0] == old[1] and "seed greedy" in old[0]

        out = build(tmp_path, "recipe=initial_thinking", "n=3", "image_size=64", *server_teacher(server.url))
    found = rows(out, MODE)
    assert len(found) == 3 and len({row["initial_thinking"] for row in found}) == 3
    for row in found:  # the server sampled, with each sample's own seed
        assert f"seed {derive_seed(0, row['sample_id'], 'initial_thinking')}" in row["initial_thinking"]
        assert row["lineage"]["stages"]["initial_thinking"]["backend"]["settings"]["sampling"] == RECIPE_SAMPLING
    assert len(endpoint.bodies) == 2 + 3
    for body in endpoint.bodies[2:]:  # every field vLLM would fill is in every request the teacher made
        assert {k: body[k] for k in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                                     "presence_penalty", "frequency_penalty", "max_tokens")} == \
               {**RECIPE_SAMPLING, "presence_penalty": 0.0, "frequency_penalty": 0.0}


def test_greedy_is_asked_for_and_then_the_seed_changes_nothing(tmp_path, fake):
    endpoint, url = fake
    out = build(tmp_path, "recipe=initial_thinking", "n=2", "image_size=64", *server_teacher(url),
                "teacher.sampling.temperature=0")
    assert all("seed greedy" in row["initial_thinking"] for row in rows(out, MODE))
    assert {body["temperature"] for body in endpoint.bodies} == {0.0}


@pytest.mark.parametrize("override,expected", [
    ("+teacher.extra_body.top_k=20", "teacher.extra_body sets ['top_k']: set sampling fields in teacher.sampling"),
    ("+teacher.sampling.presence_penalty=0.5", "unknown ['presence_penalty']"),
    ("teacher.sampling.min_p=1.5", "0 <= min_p < 1"),
    ("teacher.api=tgi", "teacher.api='tgi': use vllm"),
])
def test_a_bad_sampling_setting_is_one_sentence_before_any_work(tmp_path, fake, override, expected):
    endpoint, url = fake
    with pytest.raises(BackendUnavailable) as caught:
        build(tmp_path, "recipe=initial_thinking", "n=2", *server_teacher(url), override)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert endpoint.requests == 0 and not (tmp_path / "cache").exists()


def test_the_three_teachers_carry_the_same_sampling_in_their_identity(monkeypatch, tiny_qwen):
    stand_in_vllm.install(monkeypatch)
    overrides = ["teacher.sampling.top_k=20", "teacher.sampling.repetition_penalty=1.05"]
    identities = {}
    for name, target in (("vllm_server", []), ("vllm", [f"teacher.model={tiny_qwen}"]),
                         ("transformers", [f"teacher.model_dir={tiny_qwen}"])):
        cfg = load_config("config", [f"teacher={name}", *target, *overrides])
        identities[name] = instantiate(cfg.teacher, _convert_="all").identity()["settings"]["sampling"]
    assert identities["vllm_server"] == identities["vllm"] == identities["transformers"] == \
           {**RECIPE_SAMPLING, "top_k": 20, "repetition_penalty": 1.05}


def test_transformers_generate_gets_every_field_so_the_checkpoint_cannot_make_it_greedy(tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = build_tiny_qwen25_vl(tmp_path / "qwen")
    config_path = folder / "generation_config.json"
    config = json.loads(config_path.read_text())
    config.update(QWEN25_VL_GENERATION_CONFIG, do_sample=True)  # as the real checkpoint ships it
    config_path.write_text(json.dumps(config))

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    inputs = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "a ball"}]}],
                                           add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")

    def text(seed: int, **kwargs) -> list[int]:
        torch.manual_seed(seed)
        with torch.inference_mode():
            return model.generate(**inputs, **kwargs)[0, inputs["input_ids"].shape[-1]:].tolist()

    # The call as the teacher used to make it: the checkpoint's top_k 1 decides, whatever the seed.
    old = dict(max_new_tokens=12, do_sample=True, temperature=1.0, top_p=0.9)
    assert text(1, **old) == text(2, **old)
    new = Sampling(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, repetition_penalty=1.0,
                   max_tokens=12).generate_kwargs()
    assert text(1, **new) != text(2, **new) and text(1, **new) == text(1, **new)

    # And through the backend: two seeds, two texts.
    cfg = load_config("config", ["teacher=transformers", f"teacher.model_dir={folder}",
                                 "teacher.sampling.temperature=1.0", "teacher.sampling.top_p=1.0",
                                 "teacher.sampling.max_tokens=12"])
    backend = instantiate(cfg.teacher, _convert_="all")
    backend.check()
    picture = ImageInput.from_pil(Image.new("RGB", (56, 56), "teal"))

    async def go():
        try:
            return [await backend.initial_thinking(InitialThinkingRequest("a ball", picture, seed)) for seed in (1, 2)]
        finally:
            await backend.aclose()

    first, second = asyncio.run(go())
    assert first.text != second.text
