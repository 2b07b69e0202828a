"""Every new backend is a config group option: `source=`, `generator=`, `reference=` select it by name."""

from __future__ import annotations

import pytest

from curation.backends.generators.bagel_inprocess import BagelInProcess
from curation.backends.generators.bagel_omni import BagelOmniGenerator
from curation.backends.generators.diffusers_pipeline import DiffusersGenerator
from curation.backends.generators.images_api import ImagesApiGenerator
from curation.backends.sources.folder import FolderSource
from curation.backends.sources.hf import HFSource
from curation.core.config import load_config
from curation.run import build_backend


@pytest.mark.parametrize("group, option, knobs, cls, stage", [
    ("source", "hf", ["source.path=org/name"], HFSource, None),
    ("source", "folder", ["source.path=/data/pics"], FolderSource, None),
    ("generator", "bagel_omni", [], BagelOmniGenerator, "initial_image"),
    ("generator", "images_api", [], ImagesApiGenerator, "initial_image"),
    ("generator", "diffusers", ["generator.model_dir=/models/sd"], DiffusersGenerator, "initial_image"),
    ("generator", "bagel", ["generator.repo_dir=/src/Bagel", "generator.model_dir=/models/BAGEL-7B-MoT"],
     BagelInProcess, "initial_image"),
    ("reference", "images_api", [], ImagesApiGenerator, "reference_image"),
    ("reference", "diffusers", ["reference.model_dir=/models/flux"], DiffusersGenerator, "reference_image"),
])
def test_option_builds_its_backend(group, option, knobs, cls, stage):
    cfg = load_config("config", [f"{group}={option}", *knobs])
    backend = build_backend(group, cfg[group])  # builds only: start-up checks are not run here
    assert type(backend) is cls
    if stage is not None:
        assert backend.stage_name == stage


def test_generator_defaults_are_bagels():
    """Both ways of running BAGEL start from its text-to-image settings (IRGL.md)."""
    omni = load_config("config", ["generator=bagel_omni"]).generator
    assert (omni.width, omni.height, omni.num_inference_steps) == (1024, 1024, 50)
    assert dict(omni.extra_body) == {"cfg_text_scale": 4.0, "cfg_interval": [0.4, 1.0], "timestep_shift": 3.0}
    local = load_config("config", ["generator=bagel"]).generator
    assert (local.cfg_text_scale, list(local.cfg_interval), local.timestep_shift, local.num_timesteps) == (
        4.0, [0.4, 1.0], 3.0, 50)
