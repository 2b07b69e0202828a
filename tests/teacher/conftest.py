"""Fixtures of the teacher tests: a fake endpoint, a tiny Qwen2.5-VL, `transformers serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support.aio_server import ServerThread
from tests.support.fake_openai import FakeOpenAI
from tests.support.tiny_qwen import build_thinking_tiny_qwen, build_tiny_qwen25_vl
from tests.support.transformers_serve import transformers_serve


@pytest.fixture
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    """A fake OpenAI endpoint in a thread: (its logic, its URL without /v1)."""
    endpoint = FakeOpenAI()
    with ServerThread(endpoint.protocol) as server:
        yield endpoint, server.url


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory) -> Path:
    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny-qwen25-vl"))


@pytest.fixture(scope="session")
def served_tiny_qwen(tiny_qwen) -> Iterator[str]:
    """`transformers serve` of the tiny model: its URL without /v1 (the model name is the folder)."""
    with transformers_serve(tiny_qwen) as url:
        yield url


@pytest.fixture(scope="session")
def served_thinking_qwen(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """`transformers serve` of a tiny Qwen2.5-VL overfitted to write valid thinkings: (URL without /v1, folder)."""
    folder = build_thinking_tiny_qwen(tmp_path_factory.mktemp("thinking-qwen25-vl"))
    with transformers_serve(folder) as url:
        yield url, folder
