"""In-process BAGEL's failure classes, with a stand-in for its inferencer (no GPU, no checkout):
a prompt's own exception is its sample's named reject; a GPU failure stops the run, and every
later call too (a CUDA error leaves the context unusable)."""

from __future__ import annotations

import asyncio

import pytest
import torch
from PIL import Image

from curation.backends.base import BackendFailed, GeneratedImage, GenerateRequest
from curation.backends.generators.bagel_inprocess import BagelInProcess
from curation.core.config import load_config
from curation.core.records import Reject

GUIDANCE = dict(load_config("config", ["generator=bagel", "generator.repo_dir=x", "generator.model_dir=y"])
                .generator.guidance)


class Inferencer:
    """`InterleaveInferencer.__call__` as the backend calls it; fails as told by the prompt."""

    def __call__(self, *, text: str, image_shapes, **hyper):
        if "TOKENIZER" in text:
            raise KeyError("a token the tokenizer does not know")
        if "OOM" in text:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if "XID" in text:
            raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered")
        return {"image": Image.new("RGB", image_shapes[::-1]), "text": None}


def loaded(tmp_path) -> BagelInProcess:
    backend = BagelInProcess(repo_dir=str(tmp_path), model_dir=str(tmp_path), width=256, height=256, guidance=GUIDANCE)
    backend._torch, backend._inferencer = torch, Inferencer()  # what check() sets after loading
    return backend


def generate(backend, *prompts: str) -> list:
    async def go():
        out = []
        for prompt in prompts:
            try:
                out.append(await backend.generate(GenerateRequest(prompt, seed=1, width=256, height=256)))
            except BackendFailed as exc:
                out.append(exc)
        return out

    return asyncio.run(go())


def test_a_prompts_own_exception_rejects_only_its_sample(tmp_path):
    ok, refused, after = generate(loaded(tmp_path), "a ball", "a TOKENIZER ball", "a cube")
    assert isinstance(ok, GeneratedImage) and isinstance(after, GeneratedImage)
    assert isinstance(refused, Reject)
    assert (refused.reason, refused.transient, refused.stage) == ("generation_error", False, "generator")
    assert "KeyError" in refused.detail


@pytest.mark.parametrize("prompt", ["an OOM ball", "an XID ball"])
def test_a_gpu_failure_stops_the_run_and_every_later_call(tmp_path, prompt):
    first, later = generate(loaded(tmp_path), prompt, "a cube")
    assert isinstance(first, BackendFailed) and isinstance(later, BackendFailed)
    message = str(first)
    assert "\n" not in message and "in-process BAGEL failed on the GPU" in message and "same command" in message
    assert str(later) == message
