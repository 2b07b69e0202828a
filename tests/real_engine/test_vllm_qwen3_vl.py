"""`teacher=vllm_server_qwen3_vl` against vLLM's own OpenAI server (CPU build) serving a tiny random
Qwen3-VL: its own architecture and processor (16×16 patches merged 2×2), at the head size the CPU
attention serves. The model is untrained, so its answers are noise: what is checked is that the
Qwen3-VL request the teacher builds (messages, image parts, every sampling field) is one the real
engine answers, for every sample and every validation attempt, and that each sample then ends with
the teacher's own verdict on the answer, not with a transport error or a refusal."""

from __future__ import annotations

import sys

from curation.writer import manifest
from tests.real_engine.helpers import command, run, tail
from tests.support.tiny_qwen import build_tiny_qwen3_vl
from tests.support.vllm_server import VllmServer
from tests.teacher.helpers import assert_each_sample_once, rejects

MODE = "initial_thinking_generation_learning"
N = 4
ATTEMPTS = 3  # the stage's validation_attempts: a rejected answer is asked for again


def test_the_qwen3_vl_teacher_is_answered_by_the_real_engine(vllm_python, tmp_path):
    model = build_tiny_qwen3_vl(tmp_path / "qwen3-vl", hidden=64, heads=2, kv_heads=1, head_dim=32,
                                mrope_section=(4, 6, 6))
    with VllmServer(vllm_python, model, max_model_len=2048, log=tmp_path / "server.log") as server:
        log = tmp_path / "run.log"
        done = run(command(sys.executable, tmp_path, "recipe=initial_thinking", f"n={N}", "image_size=64",
                           "checker=none", "teacher=vllm_server_qwen3_vl", f"teacher.base_url={server.url}/v1",
                           f"teacher.model={model}", "teacher.sampling.max_tokens=8",
                           f"stages.initial_thinking.validation_attempts={ATTEMPTS}"), log)
    assert done.returncode == 0, tail(log)
    out = tmp_path / "ds"
    assert_each_sample_once(out, MODE, N)
    teacher = manifest.read(out)["run"]["backends"]["teacher"]
    # Every request answered on its first attempt; none failed, none refused.
    assert teacher["http_requests"] == teacher["http_answered"] == teacher["http_attempts"] == teacher["calls"]
    assert teacher["http_failed"] == teacher["http_refused"] == 0 and teacher["prompt_tokens"] > 0
    for reject in rejects(out, MODE):  # noise from a random model: the stage's verdict on it
        assert reject["stage"] == "initial_thinking" and f"after {ATTEMPTS} attempts" in reject["detail"], reject
