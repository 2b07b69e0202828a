"""Every new backend is a config group option: `source=`, `generator=`, `reference=` select it by name."""

from __future__ import annotations

import pytest

from curation.backends.base import BackendUnavailable, GenerateRequest
from curation.backends.generators.bagel_inprocess import BagelInProcess
from curation.backends.generators.bagel_omni import BagelOmniGenerator
from curation.backends.generators.diffusers_pipeline import DiffusersGenerator
from curation.backends.generators.images_api import ImagesApiGenerator
from curation.backends.sources.folder import FolderSource
from curation.backends.sources.hf import HFSource
from curation.core.config import load_config
from curation.run import build_backend


@pytest.mark.parametrize("group, option, knobs, cls", [
    ("source", "hf", ["source.path=org/name"], HFSource),
    ("source", "folder", ["source.path=/data/pics"], FolderSource),
    ("generator", "bagel_omni", [], BagelOmniGenerator),
    ("generator", "images_api", ["generator.model=Qwen/Qwen-Image"], ImagesApiGenerator),
    ("generator", "openai_images", [], ImagesApiGenerator),
    ("generator", "diffusers", ["generator.model_dir=/models/sd"], DiffusersGenerator),
    ("generator", "bagel", ["generator.repo_dir=/src/Bagel", "generator.model_dir=/models/BAGEL-7B-MoT"],
     BagelInProcess),
    ("reference", "images_api", ["reference.model=Qwen/Qwen-Image"], ImagesApiGenerator),
    ("reference", "openai_images", [], ImagesApiGenerator),
    ("reference", "diffusers", ["reference.model_dir=/models/flux"], DiffusersGenerator),
])
def test_option_builds_its_backend(group, option, knobs, cls, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-" + "test")  # the OpenAI options name this variable
    cfg = load_config("config", [f"{group}={option}", *knobs])
    backend = build_backend(group, cfg[group])  # builds only: start-up checks are not run here
    assert type(backend) is cls
    assert "stage_name" not in cfg[group]  # a backend does not know which stage calls it


def test_both_ways_of_running_bagel_share_one_set_of_guidance_settings(monkeypatch):
    """BAGEL's text-to-image settings (IRGL.md, BAGEL's inference notebook), the same for both backends."""
    omni_cfg = load_config("config", ["generator=bagel_omni"]).generator
    local_cfg = load_config("config", ["generator=bagel", "generator.repo_dir=/src/Bagel",
                                       "generator.model_dir=/models/BAGEL-7B-MoT"]).generator
    assert omni_cfg.guidance == local_cfg.guidance
    assert dict(omni_cfg.guidance) == {"cfg_text_scale": 4.0, "cfg_img_scale": 1.0, "cfg_interval": [0.4, 1.0],
                                       "cfg_renorm_type": "global", "cfg_renorm_min": 0.0, "timestep_shift": 3.0,
                                       "num_timesteps": 50}
    omni, local = build_backend("generator", omni_cfg), build_backend("generator", local_cfg)
    omni_settings, local_settings = omni.identity()["settings"], local.identity()["settings"]
    for name in dict(omni_cfg.guidance):  # every setting is in both identities, with the same value
        assert omni_settings[name] == local_settings[name] == local.hyperparameters()[name], name
    sent = omni.payload(GenerateRequest(prompt="a cat", seed=1, width=1024, height=1024))
    assert {k: sent[k] for k in ("cfg_text_scale", "cfg_img_scale", "cfg_interval", "cfg_renorm_type",
                                 "cfg_renorm_min", "timestep_shift", "num_inference_steps")} == {
        **{k: v for k, v in local.hyperparameters().items() if k.startswith(("cfg_", "timestep"))},
        "num_inference_steps": 50}


@pytest.mark.parametrize("option", ["bagel", "bagel_omni"])
@pytest.mark.parametrize("renorm, accepted", [("global", True), ("channel", True), ("text_channel", True),
                                              ("local", False), ("sideways", False)])
def test_renorm_types_are_exactly_those_bagel_implements(option, renorm, accepted):
    paths = ["generator.repo_dir=/src/Bagel", "generator.model_dir=/models/BAGEL-7B-MoT"] if option == "bagel" else []
    cfg = load_config("config", [f"generator={option}", *paths, f"generator.guidance.cfg_renorm_type={renorm}"])
    if accepted:
        assert build_backend("generator", cfg.generator).identity()["settings"]["cfg_renorm_type"] == renorm
    else:
        with pytest.raises(BackendUnavailable) as err:  # when the run is configured, before anything loads
            build_backend("generator", cfg.generator)
        assert "cfg_renorm_type" in str(err.value) and "\n" not in str(err.value)
