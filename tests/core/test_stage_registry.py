"""Stages register themselves; the plan orders them by needs and makes and adds optional ones when switched on."""

from __future__ import annotations

import ast
import pathlib

import pytest
from hydra.errors import HydraException

import curation.pipeline.stages as stages_package
from curation.core import schema
from curation.core.config import load_config
from curation.core.records import StageOutput
from curation.pipeline.plan import build_plan
from curation.pipeline.stages import registered
from curation.pipeline.stages.base import _REGISTRY, Stage

ROLES = {"teacher", "generator", "reference", "checker", "scorer"}
EVERYTHING = {m: 2 for m in schema.MODE_KEYS}


def test_every_stage_class_in_the_package_is_registered_without_a_list():
    defined = set()
    for path in pathlib.Path(stages_package.__file__).parent.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and any(isinstance(a, ast.Assign) and a.targets[0].id == "name"
                                                      for a in node.body if isinstance(a, ast.Assign)):
                defined.add(node.name)
    assert defined and defined == {cls.__name__ for cls in registered()}


def test_the_order_follows_needs_and_makes_and_is_the_same_every_time():
    settings = {"pairwise_judge": {"enabled": True}}
    plan = build_plan(EVERYTHING, source_provides_images=False, roles=ROLES, settings=settings)
    seen = {"prompt", "sample_id", "source_id", "lineage"}
    for stage in plan.stages:
        assert set(stage.needs) <= seen, stage.name
        seen |= set(stage.makes)
    again = build_plan(EVERYTHING, source_provides_images=False, roles=ROLES, settings=settings)
    assert [type(s) for s in again.stages] == [type(s) for s in plan.stages]
    assert plan.mode_stages == again.mode_stages


def test_optional_stages_need_their_backend_and_their_switch():
    names = lambda plan: {s.name for s in plan.stages}  # noqa: E731
    bare = build_plan(EVERYTHING, source_provides_images=False, roles={"teacher", "generator", "reference"})
    assert not names(bare) & {"score", "score_hq_image", "hq_image_quality", "pairwise_judge"}
    full = build_plan(EVERYTHING, source_provides_images=False, roles=ROLES)
    assert {"score", "score_hq_image", "hq_image_quality", "improvement"} <= names(full)
    assert full.report_stages == ("score",) and not any("score" in s for s in full.mode_stages.values())
    off = build_plan(EVERYTHING, source_provides_images=False, roles=ROLES,
                     settings={"hq_image_quality": {"enabled": False}})
    assert "hq_image_quality" not in names(off) and "improvement" not in names(off)  # it needs that check's field


def test_a_new_stage_joins_the_modes_that_make_what_it_needs():
    class Sharpness(Stage):
        name = "sharpness"
        needs = ("initial_image",)
        makes = ("initial_sharpness",)
        role = None
        optional = True
        defaults = {"enabled": False}

        async def run(self, inputs, ctx):
            return StageOutput(fields={"initial_sharpness": 1.0})

    try:
        assert Sharpness in registered()
        plan = build_plan(EVERYTHING, source_provides_images=False, roles=ROLES,
                          settings={"sharpness": {"enabled": True}})
        for mode, stages in plan.mode_stages.items():
            assert ("sharpness" in stages) == ("initial_image" in stages), mode
        assert "sharpness" not in {s.name for s in build_plan(EVERYTHING, source_provides_images=False,
                                                               roles=ROLES).stages}
    finally:
        _REGISTRY.remove(Sharpness)


def test_declared_settings_are_hydra_knobs():
    cfg = load_config("config", ["stages.improving_thinking.validation_attempts=5"])
    assert cfg.stages.improving_thinking.validation_attempts == 5
    assert cfg.stages.initial_thinking.validation_attempts == 3  # declared once, in the stage
    assert cfg.stages.pairwise_judge.enabled is False
    with pytest.raises(HydraException):
        load_config("config", ["stages.improving_thinking.validaton_attempts=5"])  # a misspelt knob
