"""In-process BAGEL without a GPU: argument checks and the one-sentence start-up errors, in order.

Loading and generating need CUDA, flash-attn, a BAGEL checkout and its weights; that part is
exercised by `scripts/bagel_smoke.py` on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from curation.backends.base import BackendUnavailable
from curation.backends.generators.bagel_inprocess import MODEL_FILES, REPO_FILES, BagelInProcess
from curation.core.config import load_config
from curation.run import main

GUIDANCE = dict(load_config("config", ["generator=bagel", "generator.repo_dir=r", "generator.model_dir=m"])
                .generator.guidance)


def bagel(repo, weights, **knobs) -> BagelInProcess:
    """In-process BAGEL with the recipes' guidance settings; knobs named like a guidance setting change it."""
    guidance = {**GUIDANCE, **{k: knobs.pop(k) for k in list(knobs) if k in GUIDANCE}}
    return BagelInProcess(repo_dir=str(repo), model_dir=str(weights), guidance=guidance, **knobs)


@pytest.fixture
def checkout(tmp_path):
    """A folder laid out like a BAGEL checkout and one like the weights (files present, contents not)."""
    repo, weights = tmp_path / "Bagel", tmp_path / "BAGEL-7B-MoT"
    for folder, files in ((repo, REPO_FILES), (weights, MODEL_FILES)):
        for name in files:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text("{}")
    return repo, weights


def failure(backend: BagelInProcess) -> str:
    with pytest.raises(BackendUnavailable) as err:
        backend.check()
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("knobs, names", [
    ({"width": 1000}, "multiple of 16"),
    ({"height": 2048}, "within 256..1024"),
    ({"think": True, "max_think_token_n": 0}, "max_think_token_n"),
])
def test_bad_settings_are_refused_before_anything_is_loaded(checkout, knobs, names):
    repo, weights = checkout
    assert names in failure(bagel(repo, weights, **knobs))


@pytest.mark.parametrize("knobs, names", [
    ({"cfg_interval": [0.8, 0.4]}, "cfg_interval"),
    ({"cfg_interval": [0.4]}, "cfg_interval"),
    ({"num_timesteps": 0}, "num_timesteps"),
    ({"cfg_renorm_type": "local"}, "cfg_renorm_type"),  # in BAGEL's app dropdown, not in its code
    ({"cfg_renorm_min": 1.5}, "cfg_renorm_min"),
    ({"cfg_text_scale": 0}, "cfg_text_scale"),
])
def test_bad_guidance_is_refused_when_the_backend_is_built(checkout, knobs, names):
    repo, weights = checkout
    with pytest.raises(BackendUnavailable) as err:
        bagel(repo, weights, **knobs)
    assert names in str(err.value) and "\n" not in str(err.value)


def test_guidance_must_name_every_setting_and_no_other(checkout):
    repo, weights = checkout
    partial = {k: v for k, v in GUIDANCE.items() if k != "cfg_img_scale"}
    with pytest.raises(BackendUnavailable, match="cfg_img_scale"):
        BagelInProcess(repo_dir=str(repo), model_dir=str(weights), guidance=partial)
    with pytest.raises(BackendUnavailable, match="cfg_scale"):
        BagelInProcess(repo_dir=str(repo), model_dir=str(weights), guidance={**GUIDANCE, "cfg_scale": 2.0})


def test_missing_checkout_then_missing_weights(checkout, tmp_path):
    repo, weights = checkout
    assert "not a BAGEL checkout" in failure(bagel(tmp_path / "nowhere", weights))
    (repo / "inferencer.py").unlink()
    assert "inferencer.py" in failure(bagel(repo, weights))
    (repo / "inferencer.py").write_text("")
    (weights / "ema.safetensors").unlink()
    assert "ema.safetensors" in failure(bagel(repo, weights))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the no-GPU sentence cannot show")
def test_without_cuda_the_sentence_points_to_vllm_omni(checkout):
    repo, weights = checkout
    assert "generator=bagel_omni" in failure(bagel(repo, weights))


def test_think_mode_settings_are_sent_only_in_think_mode(checkout):
    repo, weights = checkout
    plain = bagel(repo, weights)
    thinking = bagel(repo, weights, think=True)
    assert "text_temperature" not in plain.hyperparameters()
    assert thinking.hyperparameters()["text_temperature"] == 0.3 and thinking.hyperparameters()["think"] is True
    assert plain.identity() != thinking.identity()  # a plan changes the image: another cache key
    defaults = plain.hyperparameters()  # BAGEL's text-to-image defaults (IRGL.md)
    assert (defaults["cfg_text_scale"], defaults["cfg_interval"], defaults["timestep_shift"],
            defaults["num_timesteps"], plain.width, plain.height) == (4.0, [0.4, 1.0], 3.0, 50, 1024, 1024)


def test_selected_from_the_command_line_and_fails_before_any_work(checkout, tmp_path):
    repo, _ = checkout
    with pytest.raises(BackendUnavailable) as err:
        main(["recipe=improving_full", "n=2", "generator=bagel", f"generator.repo_dir={repo}",
              f"generator.model_dir={tmp_path / 'no-weights'}", f"out={tmp_path / 'ds'}", f"cache={tmp_path / 'c'}"])
    assert "lacks the BAGEL weights" in str(err.value)
    assert not (tmp_path / "c").exists()  # nothing was computed or stored
    with pytest.raises(BackendUnavailable):
        main(["recipe=improving_full", "n=2", "generator=bagel", f"out={tmp_path / 'ds'}", f"cache={tmp_path / 'c'}"])
