"""`teacher=vllm` without vLLM: the asynchronous engine's requests, continuous batching and failure classes,
driven through a stand-in engine (`tests/support/stand_in_vllm.py`), and the one-sentence error when
vLLM is not installed. The chat template is the tiny Qwen2.5-VL's real processor."""

from __future__ import annotations

import asyncio
import sys

import pytest
from hydra.utils import instantiate
from PIL import Image

from curation.backends.base import BackendFailed, BackendUnavailable, ImageInput
from curation.backends.teachers.prompting import Sampling
from curation.backends.teachers.vllm_inprocess import build_conversation, parse_output, sampling_kwargs
from curation.core.config import load_config
from curation.core.records import Reject
from curation.core.thinking_checks import check_improving_thinking, check_initial_thinking
from tests.helpers import build
from tests.support import stand_in_vllm
from tests.teacher.helpers import (assert_each_sample_once, improving_request, initial_request, rejects, rows,
                                   stored_rejects)


def vllm_teacher(model_dir, *overrides: str):
    cfg = load_config("config", ["teacher=vllm", f"teacher.model={model_dir}", *overrides])
    return instantiate(cfg.teacher, _convert_="all")


def ask_initial(teacher, prompts: list[str], image: ImageInput) -> list:
    async def go():
        try:
            return await asyncio.gather(*(teacher.chat(initial_request(p, image, 100 + i))
                                          for i, p in enumerate(prompts)))
        finally:
            await teacher.aclose()

    return asyncio.run(go())


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
    messages, pictures = build_conversation("be concrete", [("text", "Prompt: a ball"), ("image", image),
                                                            ("text", "go")])
    assert messages == [
        {"role": "system", "content": [{"type": "text", "text": "be concrete"}]},
        {"role": "user", "content": [{"type": "text", "text": "Prompt: a ball"}, {"type": "image"},
                                     {"type": "text", "text": "go"}]}]
    assert pictures == [image]
    assert build_conversation("", [("text", "x")])[0][0]["role"] == "user"
    sampling = Sampling(temperature=0.3, top_p=0.8, top_k=20, min_p=0.05, repetition_penalty=1.1, max_tokens=99)
    kwargs = sampling_kwargs(sampling, 1234, {"logprobs": 2})
    # Every field vLLM would otherwise fill from the checkpoint's generation config is set.
    assert kwargs == {"temperature": 0.3, "top_p": 0.8, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1,
                      "presence_penalty": 0.0, "frequency_penalty": 0.0, "max_tokens": 99, "seed": 1234,
                      "logprobs": 2}
    output = stand_in_vllm.RequestOutput("r", [1, 2, 3], [stand_in_vllm.CompletionOutput("<think>x</think>", [7, 8],
                                                                                         "length")])
    completion = parse_output(output)
    assert (completion.text, completion.finish_reason, completion.prompt_tokens, completion.completion_tokens) == \
           ("<think>x</think>", "length", 3, 2)


def test_engine_settings_prompt_and_sampling_params_come_from_the_config(monkeypatch, tiny_qwen):
    engine_class = stand_in_vllm.install(monkeypatch)
    teacher = vllm_teacher(tiny_qwen, "teacher.max_pixels=200704", "teacher.engine.tensor_parallel_size=4",
                           "teacher.structured_outputs={regex:\"<think>.+</think>\"}",
                           "teacher.sampling.top_k=20", "+teacher.sampling_extra.logprobs=1")
    teacher.check()
    engine = engine_class.instances[-1].args
    assert engine["model"] == str(tiny_qwen) and engine["tensor_parallel_size"] == 4
    assert engine["limit_mm_per_prompt"] == {"image": 2, "video": 0} and engine["max_num_seqs"] == 256
    assert engine["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 200704}  # follows the budget
    params = teacher.params(seed=42)
    assert params.kwargs["seed"] == 42 and params.kwargs["top_k"] == 20 and params.kwargs["logprobs"] == 1
    assert params.kwargs["repetition_penalty"] == 1.0 and params.kwargs["min_p"] == 0.0  # sent, not left to fill
    assert teacher.identity()["settings"]["sampling"] == {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "min_p": 0.0,
                                                          "repetition_penalty": 1.0, "max_tokens": 2048}
    assert params.output_kind is stand_in_vllm.RequestOutputKind.FINAL_ONLY  # one output per request, not per token
    assert params.kwargs["structured_outputs"].kwargs == {"regex": "<think>.+</think>"}
    assert teacher.identity()["settings"]["structured_outputs"] == {"regex": "<think>.+</think>"}
    # The model's own chat template, with one vision placeholder per image, in order.
    prompt = teacher.prompt("sys", [("text", "Prompt: a ball"), ("image", Image.new("RGB", (28, 28))), ("text", "go")])
    assert prompt["prompt"] == ("<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nPrompt: a ball"
                                "<|vision_start|><|image_pad|><|vision_end|>go<|im_end|>\n<|im_start|>assistant\n")
    assert len(prompt["multi_modal_data"]["image"]) == 1


def test_the_engines_memory_share_is_not_part_of_the_teachers_identity(monkeypatch, tiny_qwen):
    # The GPU memory plan sets gpu_memory_utilization per machine: the same answers must keep their keys.
    stand_in_vllm.install(monkeypatch)
    small = vllm_teacher(tiny_qwen, "teacher.engine.gpu_memory_utilization=0.5").identity()
    large = vllm_teacher(tiny_qwen, "teacher.engine.gpu_memory_utilization=0.9").identity()
    other_len = vllm_teacher(tiny_qwen, "teacher.engine.max_model_len=4096").identity()
    assert small == large and "gpu_memory_utilization" not in small["settings"]["engine"]
    assert other_len != large  # a setting that can change the answer still does


@pytest.mark.parametrize("override,expected", [
    ("teacher.sampling.max_tokens=0", "0 < top_p <= 1, top_k >= 0"),
    ("teacher.sampling.temperature=2.5", "0 <= temperature <= 2"),
    ("teacher.sampling.top_k=twenty", "top_k='twenty'"),
    ("~teacher.sampling.min_p", "missing ['min_p']"),
    ("+teacher.sampling_extra.top_k=20", "teacher.sampling_extra sets ['top_k']"),
    ("+teacher.sampling_extra.top_kk=20", "TypeError: Unexpected keyword argument 'top_kk'"),
    ("+teacher.sampling_extra.logprobs=-3", "VLLMValidationError: logprobs must be non-negative"),
])
def test_a_bad_sampling_value_stops_before_any_work(monkeypatch, tiny_qwen, tmp_path, override, expected):
    engine_class = stand_in_vllm.install(monkeypatch)
    with pytest.raises(BackendUnavailable) as caught:
        build(tmp_path, "recipe=initial_thinking", "n=2", "teacher=vllm", f"teacher.model={tiny_qwen}", override)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert engine_class.instances == [] and not (tmp_path / "cache").exists()


def test_requests_join_the_running_batch_as_they_arrive(monkeypatch, tiny_qwen):
    """Continuous batching: a short answer frees its slot for the next arrival while long ones decode on."""
    engine_class = stand_in_vllm.install(monkeypatch)
    # Request i decodes 40 tokens if i is a multiple of 4, else 4: lock-step batches would wait for the 40.
    engine_class.answer_tokens = staticmethod(lambda request_id, text, seed: 40 if seed % 4 == 0 else 4)
    engine_class.step_s = 0.005  # a decode step takes time (tens of ms on a GPU): arrivals come between steps
    teacher = vllm_teacher(tiny_qwen, "teacher.engine.max_num_seqs=8")
    teacher.check()
    image = ImageInput.from_pil(Image.new("RGB", (112, 112)))

    async def go():
        limit = asyncio.Semaphore(8)  # the executor's concurrency: 8 requests in flight

        async def one(i):
            async with limit:
                return await teacher.chat(initial_request(f"ball {i}", image, i))

        results = await asyncio.gather(*(one(i) for i in range(64)))
        improved = await teacher.chat(
            improving_request("ball", results[0].text, image, ImageInput.from_pil(Image.new("RGB", (64, 64))), 7))
        await teacher.aclose()
        return results, improved

    results, improved = asyncio.run(go())
    for i, result in enumerate(results):
        assert f"seed {i}" in result.text and check_initial_thinking(result.text) is None
        assert result.lineage == {"finish_reason": "stop"}  # the stage adds its template
    assert check_improving_thinking(improved.text, {"min_chars": 100, "max_chars": 8000}) is None
    engine = engine_class.instances[-1]
    # Requests joined the batch while others were mid-answer (a lock-step batcher never does that) …
    joined = [r for r in engine.finished if any(o.admitted < r.admitted < o.admitted + o.steps for o in engine.finished)]
    assert len(joined) > 32
    # … so the 8 slots stayed mostly busy: lock-step would run 8 batches of 40 steps at 13/40 use.
    assert engine.utilisation > 0.6
    assert teacher.summary()["calls"] == 65 and teacher.summary()["completion_tokens"] > 0


def test_each_failure_class_has_its_behaviour(monkeypatch, tiny_qwen):
    engine_class = stand_in_vllm.install(monkeypatch)
    # As vLLM's input processor does: a prompt over max_model_len (images counted) is a VLLMValidationError
    # without a parameter, raised before anything else of this run is answered (all four arrive at once).
    engine_class.refuse = staticmethod(lambda text: "The decoder prompt (length 99999) is longer than the maximum "
                                                    "model length of 4096." if "TOO LONG" in text else None)
    engine_class.fail_generate = staticmethod(lambda text: "FLAKY" in text)
    teacher = vllm_teacher(tiny_qwen, "teacher.engine.max_model_len=4096")
    teacher.check()
    image = ImageInput.from_pil(Image.new("RGB", (64, 64)))
    results = ask_initial(teacher, ["a ball", "a TOO LONG ball " * 2000, "a FLAKY cube", "a cone"], image)
    refused, flaky = results[1], results[2]
    # Measured with the model's processor (over 4096 tokens), not read from the message: this sample alone, kept.
    assert (refused.reason, refused.transient) == ("request_too_long", False)
    assert "longer than the maximum model length" in refused.detail and "max_model_len 4096" in refused.detail
    assert (flaky.reason, flaky.transient) == ("engine_error", True)  # the next run tries it again
    assert not isinstance(results[0], Reject) and not isinstance(results[3], Reject)


def test_a_refusal_that_fits_the_context_is_the_samples_once_the_settings_have_worked(monkeypatch, tiny_qwen):
    engine_class = stand_in_vllm.install(monkeypatch)
    engine_class.refuse = staticmethod(lambda text: "Invalid grammar specification." if "ODD" in text else None)
    image = ImageInput.from_pil(Image.new("RGB", (64, 64)))
    # Nothing answered yet: the same refusal may meet every request (a regex the engine cannot compile).
    teacher = vllm_teacher(tiny_qwen)
    teacher.check()
    with pytest.raises(BackendFailed, match="every request of this run so far was refused and none answered") as caught:
        ask_initial(teacher, ["an ODD ball"], image)
    assert "\n" not in str(caught.value)
    # Once requests of the run have been answered, it is this request's own: a kept reject quoting the engine.
    teacher = vllm_teacher(tiny_qwen)
    teacher.check()

    async def go():
        try:
            first = await teacher.chat(initial_request("a ball", image, 1))
            return first, await teacher.chat(initial_request("an ODD ball", image, 2))
        finally:
            await teacher.aclose()

    first, refused = asyncio.run(go())
    assert not isinstance(first, Reject)
    assert (refused.reason, refused.transient) == ("request_refused", False)
    assert "Invalid grammar specification." in refused.detail


def test_a_dead_engine_stops_the_run_and_the_same_command_resumes(monkeypatch, tiny_qwen, tmp_path):
    engine_class = stand_in_vllm.install(monkeypatch)
    run = ["recipe=improving_full", "n=6", "teacher=vllm", f"teacher.model={tiny_qwen}", "checker=none"]
    engine_class.die_at = 4  # the engine core dies when the 4th request arrives
    with pytest.raises(BackendFailed, match="the vLLM engine running .* died") as caught:
        build(tmp_path, *run)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "ds" / "manifest.json").exists()
    # Nothing was stored as a sample's answer for the requests the dead engine held: no rejects at all.
    assert stored_rejects(tmp_path / "cache") == []
    engine_class.die_at = None  # "fixed"
    out = build(tmp_path, *run)
    assert_each_sample_once(out, "improving_full_learning", 6)
    assert len(rows(out, "improving_full_learning")) == 6 and rejects(out, "improving_full_learning") == []
