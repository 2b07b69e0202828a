"""In-process BAGEL without a GPU: argument checks and the one-sentence start-up errors, in order.

Loading and generating need CUDA, flash-attn, a BAGEL checkout and its weights; that part is
exercised by `scripts/bagel_smoke.py` on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from curation.backends.base import BackendUnavailable
from curation.backends.generators.bagel_inprocess import MODEL_FILES, REPO_FILES, BagelInProcess
from curation.run import main


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
    ({"cfg_interval": [0.8, 0.4]}, "cfg_interval"),
    ({"cfg_interval": [0.4]}, "cfg_interval"),
    ({"num_timesteps": 0}, "num_timesteps"),
    ({"cfg_renorm_type": "sideways"}, "cfg_renorm_type"),
    ({"think": True, "max_think_token_n": 0}, "max_think_token_n"),
])
def test_bad_settings_are_refused_before_anything_is_loaded(checkout, knobs, names):
    repo, weights = checkout
    assert names in failure(BagelInProcess(repo_dir=str(repo), model_dir=str(weights), **knobs))


def test_missing_checkout_then_missing_weights(checkout, tmp_path):
    repo, weights = checkout
    assert "not a BAGEL checkout" in failure(BagelInProcess(repo_dir=str(tmp_path / "nowhere"), model_dir=str(weights)))
    (repo / "inferencer.py").unlink()
    assert "inferencer.py" in failure(BagelInProcess(repo_dir=str(repo), model_dir=str(weights)))
    (repo / "inferencer.py").write_text("")
    (weights / "ema.safetensors").unlink()
    assert "ema.safetensors" in failure(BagelInProcess(repo_dir=str(repo), model_dir=str(weights)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the no-GPU sentence cannot show")
def test_without_cuda_the_sentence_points_to_vllm_omni(checkout):
    repo, weights = checkout
    assert "generator=bagel_omni" in failure(BagelInProcess(repo_dir=str(repo), model_dir=str(weights)))


def test_think_mode_settings_are_sent_only_in_think_mode(checkout):
    repo, weights = checkout
    plain = BagelInProcess(repo_dir=str(repo), model_dir=str(weights))
    thinking = BagelInProcess(repo_dir=str(repo), model_dir=str(weights), think=True)
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
