"""The GPU memory plan: several in-process models on one GPU are sized before any loads.

A pure function of the configuration and the device's total memory (injected here: no GPU needed).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from curation.backends.base import BackendUnavailable
from curation.backends.factory import build_backends
from curation.backends.memory_plan import (BAGEL, DIFFUSERS, SCORER, VLLM, Settings, folder_parameters,
                                           plan_gpu_memory, safetensors_parameters, size_model)
from curation.core.config import load_config
from curation.run import main
from tests.generators.test_bagel_inprocess import checkout  # noqa: F401  (the fixture)

SETTINGS = Settings(margin=0.15, overhead_gb=1.0, vllm_min_kv_gb=4.0, need_gb={})


def declared(**need_gb) -> Settings:
    return Settings(margin=0.15, overhead_gb=1.0, vllm_min_kv_gb=4.0, need_gb=need_gb)


def vllm_node(model="Qwen/Qwen2.5-VL-7B-Instruct", share=0.9) -> dict:
    return {"_target_": VLLM, "model": model, "engine": {"gpu_memory_utilization": share}}


def test_parameters_are_counted_from_the_safetensors_headers(tmp_path):
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5, dtype=torch.bfloat16)}, tmp_path / "model.safetensors")
    assert safetensors_parameters(tmp_path / "model.safetensors") == 17
    # A variant file is a copy of the plain one (diffusers' fp16 variants): counted once.
    save_file({"a": torch.zeros(3, 4, dtype=torch.float16)}, tmp_path / "model.fp16.safetensors")
    (tmp_path / "unet").mkdir()
    save_file({"w": torch.zeros(10)}, tmp_path / "unet" / "diffusion_pytorch_model.safetensors")
    assert folder_parameters(tmp_path) == 27
    assert folder_parameters(tmp_path / "nowhere") is None
    # BAGEL's folder: ema + ae, sized from their headers; a header that does not parse sizes nothing.
    bagel = tmp_path / "bagel"
    bagel.mkdir()
    save_file({"w": torch.zeros(100, 100)}, bagel / "ema.safetensors")
    save_file({"v": torch.zeros(50)}, bagel / "ae.safetensors")
    model = size_model("generator", BAGEL, {"model_dir": str(bagel)}, SETTINGS)
    assert model.need_gb == pytest.approx(10050 * 2 / 1024 ** 3 * 1.15 + 1.0)
    (bagel / "ae.safetensors").write_text("{}")
    assert size_model("generator", BAGEL, {"model_dir": str(bagel)}, SETTINGS).need_gb is None


def test_a_possible_combination_gives_vllm_the_share_the_others_leave():
    nodes = {"teacher": vllm_node(), "generator": {"_target_": BAGEL, "model_dir": "/m"}}
    plan = plan_gpu_memory(nodes, 80.0, declared(generator=31.0, teacher=20.0))
    assert plan.vllm_share == 0.61  # floor((80 - 31) / 80, 2 decimals): not 0.9 of the whole GPU
    # On a larger GPU vLLM keeps its configured share (never more).
    assert plan_gpu_memory(nodes, 400.0, declared(generator=31.0, teacher=20.0)).vllm_share == 0.9


@pytest.mark.parametrize("total, need, words", [
    (48.0, {"generator": 31.0, "reference": 20.0, "teacher": 20.0}, ["48.0 GB", "51.0 GB", "generator 31.0"]),
    (48.0, {"generator": 31.0, "teacher": 20.0}, ["leaves vLLM 16.8 GB", "gpu_memory_utilization 0.35",
                                                   "20.0 GB"]),
])
def test_an_impossible_combination_is_one_sentence_naming_the_numbers(total, need, words):
    nodes = {"teacher": vllm_node(), "generator": {"_target_": BAGEL, "model_dir": "/m"},
             "reference": {"_target_": DIFFUSERS, "model_dir": "/d", "device": "auto"}}
    with pytest.raises(BackendUnavailable) as err:
        plan_gpu_memory({r: n for r, n in nodes.items() if r in need}, total, declared(**need))
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_a_model_that_cannot_be_sized_must_be_declared():
    nodes = {"teacher": vllm_node(), "generator": {"_target_": BAGEL, "model_dir": "/m"}}
    with pytest.raises(BackendUnavailable, match=r"gpu_memory\.need_gb\.teacher"):
        plan_gpu_memory(nodes, 80.0, declared(generator=31.0))  # a Hub id: no weights to read here


def test_sizes_from_weights_and_what_is_left_out(tmp_path):
    weights = tmp_path / "clip"
    weights.mkdir()
    save_file({"w": torch.zeros(1000, 1000)}, weights / "model.safetensors")  # 1M parameters
    nodes = {"scorer": {"_target_": SCORER, "model": str(weights), "device": "auto", "dtype": "auto"},
             "generator": {"_target_": BAGEL, "model_dir": "/m"}}
    plan = plan_gpu_memory(nodes, 80.0, declared(generator=31.0))
    scorer = next(m for m in plan.models if m.role == "scorer")
    assert scorer.need_gb == pytest.approx(1e6 * 2 / 1024 ** 3 * 1.15 + 1.0)
    assert plan.vllm_share is None
    nodes["scorer"]["device"] = "cpu"  # not on the GPU: nothing to share
    assert plan_gpu_memory(nodes, 80.0, declared(generator=31.0)) is None


def test_the_command_line_refuses_before_any_backend_is_built(checkout, tmp_path):  # noqa: F811
    repo, weights = checkout
    with pytest.raises(BackendUnavailable) as err:
        main(["recipe=improving_full", "n=2", "teacher=vllm", "generator=bagel", f"generator.repo_dir={repo}",
              f"generator.model_dir={weights}", "gpu_memory.total_gb=40", "gpu_memory.need_gb.generator=31",
              "gpu_memory.need_gb.teacher=20", f"out={tmp_path / 'ds'}", f"cache={tmp_path / 'c'}"])
    # The plan's sentence, not vLLM's import error: it ran before the teacher was built.
    assert "cannot share this 40.0 GB GPU" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "c").exists()


def test_a_possible_plan_sets_vllms_share_before_it_is_built(checkout):  # noqa: F811
    repo, weights = checkout
    cfg = load_config("config", ["recipe=improving_full", "teacher=vllm", "generator=bagel",
                                 f"generator.repo_dir={repo}", f"generator.model_dir={weights}",
                                 "gpu_memory.need_gb.generator=31", "gpu_memory.need_gb.teacher=20"])
    assert cfg.teacher.engine.gpu_memory_utilization == 0.9
    with pytest.raises(BackendUnavailable, match="vllm"):  # vLLM is not installed here: building it fails next
        build_backends(cfg, {"teacher": None, "generator": None}, gpu_total_gb=141.0)
    assert cfg.teacher.engine.gpu_memory_utilization == 0.78  # floor((141 - 31) / 141 = 0.780, 2 decimals)
