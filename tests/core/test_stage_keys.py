"""A prompt belongs to its stage: editing one template re-keys that stage and what depends on it, nothing else.

The template's content is in its stage's key (not in the teacher's identity), so a run after the
edit asks the teacher again for that stage alone; every other result, teacher calls included,
comes from the store.
"""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from curation.core.paths import templates_dir
from curation.pipeline.plan import build_plan
from tests.helpers import backend_calls, build

MODE = "improving_full_learning"
RUN = ["recipe=improving_full", "n=3", "checker=none"]


def stage_keys(out) -> dict[str, dict[str, str]]:
    """sample id -> stage -> the key its result is stored under, from the rows' lineage."""
    rows = pq.read_table(next((out / "data" / MODE).glob("*.parquet")), columns=["sample_id", "lineage"]).to_pylist()
    return {row["sample_id"]: {stage: info["key"] for stage, info in json.loads(row["lineage"])["stages"].items()}
            for row in rows}


def downstream(stage: str) -> set[str]:
    """The stages of this plan whose inputs depend, through any chain, on `stage`'s results."""
    plan = build_plan({MODE: 1}, source_provides_images=False)
    made = set(next(s for s in plan.stages if s.name == stage).makes)
    found: set[str] = set()
    for s in plan.stages:  # dependency order: a stage's providers come before it
        if made & set(s.needs):
            found.add(s.name)
            made |= set(s.makes)
    return found


@pytest.mark.parametrize("stage,template", [("initial_thinking", "teacher_initial_thinking"),
                                            ("improving_thinking", "teacher_improving_thinking")])
def test_editing_one_template_recomputes_that_stage_alone(tmp_path, monkeypatch, stage, template):
    prompts = tmp_path / "templates"
    shutil.copytree(templates_dir(), prompts)
    monkeypatch.setattr("curation.core.templates.templates_dir", lambda: prompts)
    first = build(tmp_path, *RUN, out="first")
    before = stage_keys(first)
    assert set(backend_calls(first)) >= {"initial_thinking", "improving_thinking", "reference_image", "initial_image"}

    # A wording change, version not bumped: the key holds the content, so it still shows.
    path = prompts / f"{template}.yaml"
    path.write_text(path.read_text().replace("You are an expert art director", "You are a meticulous art director"))
    second = build(tmp_path, *RUN, out="second")
    after = stage_keys(second)

    assert set(after) == set(before) and len(before) == 3
    allowed = {stage} | downstream(stage)
    for sample_id, keys in after.items():
        changed = {name for name, key in keys.items() if before[sample_id][name] != key}
        assert stage in changed and changed <= allowed, (sample_id, changed)
    # The offline teacher answers by template name, so the edited stage's text is unchanged and
    # nothing downstream of it is recomputed either: one teacher call per sample, that stage's.
    assert backend_calls(second) == {stage: 3}


def test_the_teacher_identity_holds_no_prompt():
    from hydra.utils import instantiate

    from curation.core.config import load_config

    cfg = load_config("config", ["teacher=vllm_server"])
    identity = instantiate(cfg.teacher, _convert_="all").identity()
    assert "templates" not in identity["settings"]
    assert set(identity["settings"]) >= {"sampling", "pixels"}
