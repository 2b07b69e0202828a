"""`teacher=vllm_server` against a real OpenAI-compatible server: `transformers serve` of a tiny random
Qwen2.5-VL, started by the test on 127.0.0.1, alone and behind the fault-injecting proxy."""

from __future__ import annotations

import asyncio

from hydra.utils import instantiate
from PIL import Image

from curation.backends.base import ImageInput
from curation.core.config import load_config
from tests.helpers import build
from tests.support.fault_proxy import FaultProxy, Hang, MalformedJSON, Reset, Status
from tests.teacher.helpers import assert_each_sample_once, initial_request, rejects, server_teacher

MODE = "initial_thinking_generation_learning"
# Greedy, so that the same request always gets the same gibberish; short, so tests stay quick.
GREEDY = ["teacher.sampling.temperature=0", "teacher.sampling.max_tokens=12"]


def test_images_reach_the_served_model_at_the_budgeted_size(served_tiny_qwen, tiny_qwen):
    def prompt_tokens(max_pixels: int) -> dict:
        cfg = load_config("config", [*server_teacher(served_tiny_qwen, str(tiny_qwen), api="transformers"), *GREEDY,
                                     f"teacher.max_pixels={max_pixels}"])
        backend = instantiate(cfg.teacher, _convert_="all")
        backend.check()  # GET /v1/models lists the served folder under its path

        async def go():
            picture = ImageInput.from_pil(Image.new("RGB", (448, 448)))
            output = await backend.chat(initial_request("a ball", picture, 1))
            await backend.aclose()
            return output

        return {**asyncio.run(go()).lineage, **backend.summary()}  # lineage, and the run's accounting (one call)

    small, large = prompt_tokens(50176), prompt_tokens(200704)
    assert small["image_sizes"] == ["224x224"] and large["image_sizes"] == ["448x448"]
    # The server's own count: 64 image tokens for 224², 256 for 448² (one per 28×28 pixels).
    assert large["prompt_tokens"] - small["prompt_tokens"] == 256 - 64
    assert small["completion_tokens"] == 12 and small["finish_reason"] == "length"


def test_a_run_against_the_server_rejects_gibberish_as_truncated(served_tiny_qwen, tiny_qwen, tmp_path):
    out = build(tmp_path, "recipe=initial_thinking", "n=3", *server_teacher(served_tiny_qwen, str(tiny_qwen), api="transformers"),
                *GREEDY, "stages.initial_thinking.validation_attempts=2")
    assert_each_sample_once(out, MODE, 3)
    found = rejects(out, MODE)
    assert {(r["stage"], r["reason"]) for r in found} == {("initial_thinking", "truncated")} and len(found) == 3


def _fault_plan():
    """Each new chat request gets the next of four fault sequences, in turn, so every kind occurs.

    (Bucketing by the request's hash left it to chance: the body names the model by its temp folder,
    new every session, and some sessions had no request in a bucket.)"""
    sequences = [[Status(429, retry_after=0.05), Reset()], [Status(503), MalformedJSON()], [Hang(3.0)], []]
    turns: dict[str, int] = {}

    def plan(call):
        if not call.path.endswith("/chat/completions"):
            return None
        faults = sequences[turns.setdefault(call.key, len(turns)) % len(sequences)]
        return faults[call.attempt] if call.attempt < len(faults) else None

    return plan


def test_faults_in_front_of_the_server_change_nothing_in_the_outcome(served_tiny_qwen, tiny_qwen, tmp_path):
    teacher = [*GREEDY, "teacher.concurrency=2"]
    clean = build(tmp_path, "recipe=initial_thinking", "n=4", *server_teacher(served_tiny_qwen, str(tiny_qwen), api="transformers"),
                  *teacher, out="clean", cache="clean-cache")
    with FaultProxy(served_tiny_qwen, _fault_plan()) as proxy:
        faulted = build(tmp_path, "recipe=initial_thinking", "n=4",
                        *server_teacher(proxy.url, str(tiny_qwen), api="transformers", timeout_s=2.0), *teacher,
                        out="faulted", cache="faulted-cache")
    assert {"status_429", "reset", "status_503", "malformed_json", "hang"} <= set(proxy.faults())
    assert_each_sample_once(faulted, MODE, 4)
    # Each reject quotes the start of what the model wrote: the same text reached the pipeline.
    assert rejects(faulted, MODE) == rejects(clean, MODE) and len(rejects(clean, MODE)) == 4
