"""Fixtures of the real-engine tests: vLLM's CPU build (its own venv), a tiny Qwen2.5-VL it serves.

The venv is named by IRGL_VLLM_PYTHON (`make test-real-engine` builds it with scripts/vllm_env.sh and
sets it). Without it these tests skip, so a plain `make test` stays fast; with
IRGL_REAL_ENGINE_REQUIRED=1 (set by `make test-real-engine`, so by CI) a missing venv is a failure.

One server for the folder (session scope): each start costs a minute or more on two cores. Only
the test that kills a server starts its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.tiny_qwen import INITIAL_ANSWERS, VLLM_CPU_DIMS, build_thinking_tiny_qwen
from tests.support.vllm_server import VllmServer

# Qwen2.5-VL-7B-Instruct's own generation_config.json: a server fills every sampling field a request
# leaves out from it, so a client that sends only temperature and top_p decodes greedily (top_k 1).
QWEN25_VL_GENERATION = {"do_sample": True, "top_k": 1, "top_p": 0.001, "temperature": 0.1,
                        "repetition_penalty": 1.05}
# Small enough that one prompt of ~2,000 characters does not fit; every other request (~350 tokens
# with its images, plus max_tokens) does.
MAX_MODEL_LEN = 600


@pytest.fixture(scope="session")
def vllm_python() -> str:
    python = os.environ.get("IRGL_VLLM_PYTHON")
    if python and Path(python).is_file():
        return python
    message = ("no real-engine environment (IRGL_VLLM_PYTHON unset or missing): `make test-real-engine` "
               "builds it (scripts/vllm_env.sh) and runs these tests")
    if os.environ.get("IRGL_REAL_ENGINE_REQUIRED"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def thinking_model(vllm_python, tmp_path_factory) -> Path:
    """A tiny Qwen2.5-VL for vLLM's CPU engine that writes valid thinkings, the initial one of four
    kinds (a quarter of the time each), with Qwen2.5-VL's own sampling defaults in its checkpoint."""
    return build_thinking_tiny_qwen(tmp_path_factory.mktemp("vllm-qwen25-vl"), **VLLM_CPU_DIMS,
                                    initial_answers=INITIAL_ANSWERS,
                                    generation=QWEN25_VL_GENERATION)


@pytest.fixture(scope="session")
def vllm_server(vllm_python, thinking_model, tmp_path_factory) -> Iterator[VllmServer]:
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with VllmServer(vllm_python, thinking_model, max_model_len=MAX_MODEL_LEN, log=log) as server:
        yield server
