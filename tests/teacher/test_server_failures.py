"""Failure classes through whole runs of `teacher=vllm_server`: a sample the server refuses is that sample's
named reject; a server refusing the configuration stops the run with its own words, stores nothing as
an answer, and once fixed the same command computes what failed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from curation.backends.base import BackendFailed
from curation.writer import manifest
from tests.helpers import build
from tests.support.fault_proxy import Call, FaultProxy, Status
from tests.teacher.helpers import assert_each_sample_once, rejects, rows, server_teacher, stored_rejects

MODE = "initial_thinking_generation_learning"
RUN = ["recipe=initial_thinking", "n=6", "image_size=64"]
# What vLLM's OpenAI server answers for a prompt over --max-model-len (vllm/entrypoints/openai/engine/serving.py).
TOO_LONG = {"message": "This model's maximum context length is 4096 tokens. However, your request has 5000 input "
                       "tokens. Please reduce the length of the input messages.",
            "type": "BadRequestError", "param": "input_tokens", "code": 400}
WRONG_MODEL = {"message": "The model `fake/qwen2.5-vl` does not exist.", "type": "NotFoundError", "param": "model",
               "code": 404}
UNAUTHORIZED = {"message": "Unauthorized"}


class Switchable:
    """A plan that refuses chat requests with `fault` (all of them, or only the first request seen)
    until switched off: the server "fixed" behind the same URL."""

    def __init__(self, fault: Status, *, first_only: bool = False):
        self.fault, self.first_only, self.on = fault, first_only, True
        self.refused: set[str] = set()

    def __call__(self, call: Call) -> Status | None:
        if not self.on or not call.path.endswith("/chat/completions"):
            return None
        if self.first_only and self.refused and call.key not in self.refused:
            return None
        self.refused.add(call.key)
        return self.fault


def test_a_prompt_over_the_context_length_rejects_its_own_sample_and_stays_rejected(tmp_path, fake):
    _, url = fake
    plan = Switchable(Status(400, error=TOO_LONG), first_only=True)
    with FaultProxy(url, plan) as proxy:
        teacher = server_teacher(proxy.url)
        out = build(tmp_path, *RUN, *teacher, "stages.initial_thinking.validation_attempts=1")
        refused = [call for call, name in proxy.log if name == "status_400"]
        assert len(refused) == 1  # not retried
        assert_each_sample_once(out, MODE, 6)
        found = rejects(out, MODE)
        assert [(r["stage"], r["reason"]) for r in found] == [("initial_thinking", "request_too_long")]
        assert "param input_tokens" in found[0]["detail"] and "maximum context length is 4096" in found[0]["detail"]
        assert len(rows(out, MODE)) == 5

        plan.on = False  # the same command again: the refusal is the sample's answer, kept
        build(tmp_path, *RUN, *teacher, "stages.initial_thinking.validation_attempts=1")
        assert manifest.read(out)["run"]["backend_calls"] == {}
        assert [(r["stage"], r["reason"]) for r in rejects(out, MODE)] == [("initial_thinking", "request_too_long")]


@pytest.mark.parametrize("fault", [Status(404, error=WRONG_MODEL), Status(401, error=UNAUTHORIZED)],
                         ids=["wrong_model", "refused_key"])
def test_a_server_refusing_the_configuration_stops_the_run_and_the_fixed_server_computes_it(tmp_path, fake, fault):
    _, url = fake
    plan = Switchable(fault)
    with FaultProxy(url, plan) as proxy:  # GET /models passes: the start-up check cannot see it
        teacher = server_teacher(proxy.url)
        with pytest.raises(BackendFailed) as caught:
            build(tmp_path, *RUN, *teacher)
        message = str(caught.value)
        assert "\n" not in message and f"HTTP {fault.code}" in message and fault.error["message"] in message
        chats = [name for call, name in proxy.log if call.path.endswith("/chat/completions")]
        assert set(chats) == {f"status_{fault.code}"} and len(chats) <= 6  # stopped at once, nothing retried
        assert not (tmp_path / "ds" / "manifest.json").exists()
        assert stored_rejects(tmp_path / "cache") == []  # nothing stored as any sample's answer

        plan.on = False  # fixed: the same command computes every thinking
        out = build(tmp_path, *RUN, *teacher)
    assert manifest.read(out)["run"]["backend_calls"]["initial_thinking"] == 6
    assert len(rows(out, MODE)) == 6 and rejects(out, MODE) == []


def test_from_the_command_line_a_refused_configuration_is_one_sentence_and_exit_2(tmp_path, fake):
    _, url = fake
    with FaultProxy(url, Switchable(Status(404, error=WRONG_MODEL))) as proxy:
        result = subprocess.run([sys.executable, "-m", "curation.run", *RUN, *server_teacher(proxy.url),
                                 f"out={tmp_path / 'ds'}", f"cache={tmp_path / 'cache'}"],
                                capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "The model `fake/qwen2.5-vl` does not exist." in errors[0]
    assert "Traceback" not in result.stderr
