"""`teacher=vllm` without vLLM: request building, batching and output parsing against a stand-in module,
and the one-sentence error when vLLM is not installed."""

from __future__ import annotations

import asyncio
import sys
import types
from dataclasses import dataclass

import pytest
from hydra.utils import instantiate
from PIL import Image

from curation.backends.base import BackendUnavailable, ImageInput, ImprovingThinkingRequest, InitialThinkingRequest
from curation.backends.teachers.prompting import Sampling
from curation.backends.teachers.vllm_inprocess import build_conversation, parse_output, sampling_kwargs
from curation.core.config import load_config
from curation.core.records import Reject
from curation.core.thinking_checks import check_improving_thinking, check_initial_thinking
from tests.helpers import build
from tests.teacher.helpers import assert_each_sample_once, rows

SECTIONS = ("### Detailed Explanation of Required Improvements:\nWarm the light and centre the ball.\n"
            "### Step-by-Step Modification Guidance:\n1. Centre the ball. 2. Warm the light.\n"
            "### Final Comprehensive Prompt for the Improved Image:\nA centred red ball in warm light.\n")


@dataclass
class _Sample:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class _Output:
    prompt_token_ids: list[int]
    outputs: list[_Sample]


def fake_vllm(monkeypatch, poison: str | None = None):
    """Install a stand-in `vllm` with the API surface the backend uses; returns its LLM class."""
    vllm = types.ModuleType("vllm")
    sampling_params = types.ModuleType("vllm.sampling_params")

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class StructuredOutputsParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LLM:
        instances: list = []

        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.batches: list[int] = []
            LLM.instances.append(self)

        def chat(self, conversations, params, use_tqdm=True):
            self.batches.append(len(conversations))
            texts = [" ".join(p["text"] for m in c for p in (m["content"] if isinstance(m["content"], list) else [])
                              if p["type"] == "text") for c in conversations]
            if poison and any(poison in t for t in texts):
                raise ValueError("the prompt is longer than max_model_len")
            outputs = []
            for conversation, param in zip(conversations, params):
                images = [p["image_pil"] for p in conversation[-1]["content"] if p["type"] == "image_pil"]
                sizes = ", ".join(f"{im.width}x{im.height}" for im in images)
                seed = param.kwargs["seed"]
                if len(images) == 2:
                    text = (f"<think>\nThe previous image ({sizes}) is dim and off-centre; seed {seed}.\n"
                            f"{SECTIONS}</think>")
                else:
                    text = (f"<think>\nA red ball in the centre of a {sizes} frame, soft light from the left, "
                            f"plain background, seed {seed}.\n</think>")
                outputs.append(_Output(list(range(50)), [_Sample(text, list(range(len(text) // 4)), "stop")]))
            return outputs

    vllm.LLM, vllm.SamplingParams, vllm.sampling_params = LLM, SamplingParams, sampling_params
    sampling_params.SamplingParams, sampling_params.StructuredOutputsParams = SamplingParams, StructuredOutputsParams
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling_params)
    return LLM


def vllm_teacher(*overrides: str):
    cfg = load_config("config", ["teacher=vllm", *overrides])
    return instantiate(cfg.teacher, _convert_="all")


def test_without_vllm_building_the_backend_says_how_to_fix_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError, installed or not
    with pytest.raises(BackendUnavailable) as caught:
        build(tmp_path, "recipe=initial_thinking", "n=2", "teacher=vllm")
    message = str(caught.value)
    assert "pip install 'irgl-curation[vllm]'" in message and "teacher=vllm_server" in message
    assert "\n" not in message
    assert not (tmp_path / "cache").exists()


def test_the_module_itself_does_not_import_vllm():
    import curation.backends.teachers.vllm_inprocess as module

    assert "vllm" not in vars(module)


def test_request_building_and_parsing():
    image = Image.new("RGB", (56, 28))  # prepared: a PIL image within the budget
    conversation = build_conversation("be concrete", [("text", "Prompt: a ball"), ("image", image), ("text", "go")])
    assert conversation == [
        {"role": "system", "content": "be concrete"},
        {"role": "user", "content": [{"type": "text", "text": "Prompt: a ball"},
                                     {"type": "image_pil", "image_pil": image}, {"type": "text", "text": "go"}]}]
    assert build_conversation("", [("text", "x")])[0]["role"] == "user"
    kwargs = sampling_kwargs(Sampling(temperature=0.3, top_p=0.8, max_tokens=99), 1234, {"top_k": 20})
    assert kwargs == {"temperature": 0.3, "top_p": 0.8, "max_tokens": 99, "seed": 1234, "top_k": 20}
    completion = parse_output(_Output([1, 2, 3], [_Sample("<think>x</think>", [7, 8], "length")]))
    assert (completion.text, completion.finish_reason, completion.prompt_tokens, completion.completion_tokens) == \
           ("<think>x</think>", "length", 3, 2)


def test_engine_settings_and_sampling_params_come_from_the_config(monkeypatch):
    llm_class = fake_vllm(monkeypatch)
    teacher = vllm_teacher("teacher.max_pixels=200704", "teacher.engine.tensor_parallel_size=4",
                           "teacher.structured_outputs={regex:\"<think>.+</think>\"}",
                           "+teacher.sampling_extra.top_k=20")
    teacher.check()
    engine = llm_class.instances[-1].kwargs
    assert engine["model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and engine["tensor_parallel_size"] == 4
    assert engine["limit_mm_per_prompt"] == {"image": 2, "video": 0}
    assert engine["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 200704}  # follows the budget
    params = teacher.params(seed=42)
    assert params.kwargs["seed"] == 42 and params.kwargs["top_k"] == 20
    assert params.kwargs["structured_outputs"].kwargs == {"regex": "<think>.+</think>"}
    assert teacher.identity()["settings"]["structured_outputs"] == {"regex": "<think>.+</think>"}


def test_concurrent_requests_are_batched_and_answers_go_back_to_their_callers(monkeypatch):
    llm_class = fake_vllm(monkeypatch)
    teacher = vllm_teacher()
    teacher.check()
    image = ImageInput.from_pil(Image.new("RGB", (1024, 512)))

    async def go():
        results = await asyncio.gather(*(teacher.initial_thinking(InitialThinkingRequest(f"ball {i}", image, 100 + i))
                                         for i in range(40)))
        improved = await teacher.improving_thinking(
            ImprovingThinkingRequest("ball", results[0].text, image, ImageInput.from_pil(Image.new("RGB", (64, 64))),
                                     7))
        await teacher.aclose()
        return results, improved

    results, improved = asyncio.run(go())
    for i, result in enumerate(results):
        assert f"seed {100 + i}" in result.text and "896x448 frame" in result.text  # resized to the budget first
        assert check_initial_thinking(result.text) is None
        assert result.lineage["prompt_tokens"] == 50 and result.lineage["template"] == "teacher_initial_thinking@1"
    assert check_improving_thinking(improved.text, {"min_chars": 100, "max_chars": 8000}) is None
    batches = llm_class.instances[-1].batches
    assert sum(batches) == 41 and len(batches) < 41 and max(batches) > 1


def test_a_request_the_engine_refuses_rejects_only_its_own_sample(monkeypatch):
    fake_vllm(monkeypatch, poison="POISON")
    teacher = vllm_teacher()
    teacher.check()
    image = ImageInput.from_pil(Image.new("RGB", (64, 64)))

    async def go():
        prompts = ["a ball", "a POISON ball", "a cube", "a cone"]
        out = await asyncio.gather(*(teacher.initial_thinking(InitialThinkingRequest(p, image, i))
                                     for i, p in enumerate(prompts)))
        await teacher.aclose()
        return out

    results = asyncio.run(go())
    assert isinstance(results[1], Reject) and results[1].reason == "engine_error" and results[1].transient
    assert "max_model_len" in results[1].detail
    assert all(not isinstance(r, Reject) for i, r in enumerate(results) if i != 1)


def test_a_whole_run_with_the_in_process_engine(monkeypatch, tmp_path):
    llm_class = fake_vllm(monkeypatch)
    out = build(tmp_path, "recipe=improving_full", "n=4", "teacher=vllm", "checker=none")
    assert_each_sample_once(out, "improving_full_learning", 4)
    found = rows(out, "improving_full_learning")
    assert len(found) == 4
    assert all(r["lineage"]["stages"]["improving_thinking"]["backend"]["id"] == "Qwen/Qwen2.5-VL-7B-Instruct"
               for r in found)
    assert len(llm_class.instances) == 1  # one engine for the whole run
