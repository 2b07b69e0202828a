"""The improving modes may condition on the base model's own first thinking (IRGL.md)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from curation.writer import manifest
from curation.pipeline.plan import PlanError, build_plan
from tests.helpers import build


def _column(out, mode, column):
    table = pq.read_table(next((out / "data" / mode).glob("*.parquet")), columns=["sample_id", column, "lineage"])
    return {row["sample_id"]: row for row in table.to_pylist()}


def test_plan_picks_one_maker_of_the_improving_initial_thinking():
    teacher = build_plan({"improving_full": 2, "initial_full": 2},
                         source_provides_images=False)
    base = build_plan({"improving_full": 2, "initial_full": 2}, source_provides_images=False,
                      improving_initial_thinking="base_model")
    assert [type(s).__name__ for s in teacher.stages if s.name == "improving_initial_thinking"] == ["TeacherPlanForImproving"]
    assert [type(s).__name__ for s in base.stages if s.name == "improving_initial_thinking"] == ["BasePlanForImproving"]
    # Improving rows no longer need the teacher's initial thinking; the initial modes still do.
    assert "initial_thinking" not in base.mode_stages["improving_full_learning"]
    assert "initial_thinking" in base.mode_stages["initial_full_learning"]
    with pytest.raises(PlanError, match="improving_initial_thinking"):
        build_plan({"improving_full": 2}, source_provides_images=False,
                   improving_initial_thinking="bagel")


def test_improving_modes_take_the_base_models_plan(tmp_path):
    out = build(tmp_path, "recipe=all", "n=6", "improving_initial_thinking=base_model", "generator.think=true")
    improving = _column(out, "improving_full_learning", "initial_thinking")
    initial = _column(out, "initial_full_learning", "initial_thinking")
    assert set(improving) == set(initial)
    for sample_id, row in improving.items():
        lineage = json.loads(row["lineage"])
        assert lineage["stages"]["improving_initial_thinking"]["from"] == "base_model"
        assert row["initial_thinking"].startswith("<think>")
    # Where the base model drew a defect its plan follows its own image, not the high-quality one.
    defective = [s for s, row in improving.items()
                 if json.loads(row["lineage"])["stages"]["initial_image"]["injected_defects"]]
    assert defective and any(improving[s]["initial_thinking"] != initial[s]["initial_thinking"] for s in defective)


def test_a_base_model_without_thinking_is_a_named_reject(tmp_path):
    out = build(tmp_path, "recipe=improving_full", "n=3", "improving_initial_thinking=base_model")
    doc = manifest.read(out)
    assert doc["modes"]["improving_full_learning"]["rejects_by_reason"] == {
        "improving_initial_thinking/no_base_thinking": 3}
