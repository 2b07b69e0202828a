"""Failure classes through whole runs of `teacher=vllm_server`: a sample the server refuses is that sample's
named reject; a server refusing the configuration stops the run with its own words, stores nothing as
an answer, and once fixed the same command computes what failed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from curation.backends.base import BackendFailed, BackendUnavailable
from curation.backends.http import ServerGone
from curation.writer import manifest
from tests.helpers import build
from tests.support.aio_server import ServerThread
from tests.support.fake_openai import FakeOpenAI
from tests.support.fault_proxy import Call, DiesAfter, FaultProxy, Status
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


@pytest.mark.parametrize("fault", [Status(404, error=WRONG_MODEL), Status(401, error=UNAUTHORIZED),
                                   Status(400, error=TOO_LONG)],
                         ids=["wrong_model", "refused_key", "every_prompt_over_the_context"])
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


# ----------------------------------------------------------------------------- a server that answers as vLLM does

PROMPTS = ["two red balls on a table", "a blue cube next to a green cone", "three yellow balls",
           "a red cone left of a blue ball", "a green cube", "two blue cones"]
LONG = "a photo of two red balls and a blue cube on a wooden table, " * 30  # ~1,800 characters: under the gate
# The fake counts 4 characters a token (the template is ~1,200) and one token per 28x28 pixels (81 for
# a 252² image as the teacher sends it): a prompt above is ~260 tokens, the long one ~710.
CONTEXT = ["teacher.sampling.max_tokens=256"]


def _prompts(tmp_path, prompts):
    """A folder source: one distinct 256² noise image per prompt, the prompt beside it."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    for i, prompt in enumerate(prompts):
        pixels = np.random.default_rng(i).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
        (folder / f"{i:02d}.txt").write_text(prompt)
    return ["source=folder", f"source.path={folder}"]


@pytest.mark.parametrize("position", [0, 3, 5])
def test_an_over_long_prompt_is_its_samples_reject_and_the_run_finishes(tmp_path, position):
    # vLLM 0.32 answers a prompt over --max-model-len (images counted) with 400, type BadRequestError, param
    # null: the fields do not say it. The first requests go out together, so the long one (first, in the
    # middle, last) is refused before anything is answered; it waits for the verdict of the others.
    prompts = PROMPTS[:position] + [LONG] + PROMPTS[position:]
    endpoint = FakeOpenAI(max_model_len=600)
    with ServerThread(endpoint.protocol) as server:
        run = ["recipe=initial_thinking", f"n={len(prompts)}", *_prompts(tmp_path, prompts), *CONTEXT,
               *server_teacher(server.url)]
        out = build(tmp_path, *run)
        assert_each_sample_once(out, MODE, len(prompts))
        found = rejects(out, MODE)
        assert [(r["stage"], r["reason"]) for r in found] == [("initial_thinking", "request_too_long")]
        assert "HTTP 400 (BadRequestError)" in found[0]["detail"]
        assert "the server's max_model_len 600" in found[0]["detail"]
        assert len(rows(out, MODE)) == len(prompts) - 1

        answered = endpoint.requests
        build(tmp_path, *run)  # the reject is the sample's answer, kept: the same command asks nothing again
        assert endpoint.requests == answered and manifest.read(out)["run"]["backend_calls"] == {}


def test_a_context_too_small_for_every_prompt_stops_the_run_and_stores_nothing(tmp_path):
    endpoint = FakeOpenAI(max_model_len=200)
    with ServerThread(endpoint.protocol) as server:
        run = ["recipe=initial_thinking", "n=3", *_prompts(tmp_path, PROMPTS[:3]), "teacher.sampling.max_tokens=64",
               *server_teacher(server.url)]
        with pytest.raises(BackendFailed) as caught:
            build(tmp_path, *run)
        message = str(caught.value)
        assert "refused every request of this run so far and answered none" in message and "\n" not in message
        assert "the server's max_model_len 200" in message and "--max-model-len" in message
        assert not (tmp_path / "ds" / "manifest.json").exists()
        assert stored_rejects(tmp_path / "cache") == []
        endpoint.max_model_len = 4096  # restarted with a larger context: the same command computes all
        out = build(tmp_path, *run)
    assert len(rows(out, MODE)) == 3 and rejects(out, MODE) == []


def test_max_tokens_over_the_servers_context_is_one_sentence_before_any_work(tmp_path):
    endpoint = FakeOpenAI(max_model_len=1024)
    with ServerThread(endpoint.protocol) as server:
        with pytest.raises(BackendUnavailable) as caught:  # recipe default max_tokens: 2048
            build(tmp_path, "recipe=initial_thinking", "n=2", *server_teacher(server.url))
    message = str(caught.value)
    assert "teacher.sampling.max_tokens=2048 leaves no room for a prompt" in message and "max_model_len 1024" in message
    assert endpoint.requests == 0 and not (tmp_path / "cache").exists()


# ----------------------------------------------------------------------------- a server that goes away

@pytest.mark.parametrize("n,answers", [(2, 1), (4, 2), (6, 5)])
def test_a_server_that_dies_with_few_requests_left_stops_the_run_and_the_same_command_resumes(tmp_path, fake, n,
                                                                                              answers):
    # Fewer requests are left than give_up_after (32): before, each became a transient connection_error
    # reject and the run wrote its dataset and exited 0.
    _, url = fake
    run = ["recipe=initial_thinking", f"n={n}", "image_size=64", "teacher.concurrency=1"]
    with FaultProxy(url, DiesAfter(answers)) as proxy:
        with pytest.raises(ServerGone) as caught:
            build(tmp_path, *run, *server_teacher(proxy.url, max_attempts=2))
    message = str(caught.value)
    assert "stopped answering" in message and "resumes" in message and "\n" not in message
    assert not (tmp_path / "ds" / "manifest.json").exists() and not (tmp_path / "ds" / "data").exists()
    assert stored_rejects(tmp_path / "cache") == []  # no sample was rejected for the server's death

    out = build(tmp_path, *run, *server_teacher(url))  # the server is back: the same command finishes
    assert manifest.read(out)["run"]["backend_calls"]["initial_thinking"] == n - answers  # the rest only
    assert_each_sample_once(out, MODE, n) and len(rows(out, MODE)) == n


def test_from_the_command_line_a_dead_server_is_one_sentence_exit_2_and_no_dataset(tmp_path, fake):
    _, url = fake
    with FaultProxy(url, DiesAfter(1)) as proxy:
        result = subprocess.run([sys.executable, "-m", "curation.run", "recipe=initial_thinking", "n=3",
                                 "image_size=64", "teacher.concurrency=1", *server_teacher(proxy.url, max_attempts=2),
                                 f"out={tmp_path / 'ds'}", f"cache={tmp_path / 'cache'}"],
                                capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "stopped answering" in errors[0]
    assert "dataset written" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "ds" / "manifest.json").exists()
