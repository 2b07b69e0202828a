"""Every recipe runs offline and its shards load with `datasets`, exactly as the schema says."""

from __future__ import annotations

import datasets
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation.writer import manifest

from curation.core import schema
from tests.helpers import build

SHORT = {"initial_thinking_understanding_learning": "initial_understanding",
         "initial_thinking_generation_learning": "initial_thinking",
         "initial_full_learning": "initial_full",
         "improving_thinking_understanding_learning": "improving_understanding",
         "improving_thinking_generation_learning": "improving_thinking",
         "improving_full_learning": "improving_full"}


def assert_mode_loads(out, mode):
    ds = datasets.load_dataset(str(out), mode, split="train")
    mode_schema = schema.load(mode)
    assert ds.column_names == mode_schema.column_names
    assert len(ds) == manifest.read(out)["modes"][mode]["accepted"] > 0
    row = ds[0]
    for col in mode_schema.columns:
        if col.is_image:
            assert isinstance(row[col.name], Image.Image)
            row[col.name].load()
        else:
            assert isinstance(row[col.name], str) and row[col.name]
    return ds


@pytest.mark.parametrize("mode", schema.MODE_KEYS)
def test_single_mode_recipe(tmp_path, mode):
    out = build(tmp_path, f"recipe={SHORT[mode]}", "n=4")
    assert sorted(p.name for p in (out / "data").iterdir()) == [mode]
    assert_mode_loads(out, mode)
    doc = manifest.read(out)
    # Only the stages the mode needs ran.
    ran = set(doc["run"]["backend_calls"])
    assert ran <= set(doc["modes"][mode]["stages"]) | {"score"}
    if "image" not in {c.type for c in schema.load(mode).columns if c.source == "initial_image"}:
        assert "initial_image" in ran or "initial_image" not in doc["modes"][mode]["stages"]


def test_all_recipe_loads_every_mode(all_modes_dataset):
    for mode in schema.MODE_KEYS:
        assert_mode_loads(all_modes_dataset, mode)


def test_all_computes_shared_stages_once(all_modes_dataset):
    calls = manifest.read(all_modes_dataset)["run"]["backend_calls"]
    # 12 samples: one reference image, one initial thinking, one initial image each, shared by all modes.
    assert calls["reference_image"] == 12
    assert calls["initial_thinking"] == 12
    assert calls["initial_image"] == 12


def test_lineage_and_question_columns(all_modes_dataset):
    import json

    table = pq.read_table(next((all_modes_dataset / "data" / "improving_full_learning").glob("*.parquet")))
    lineage = json.loads(table.column("lineage")[0].as_py())
    assert lineage["sample_id"] == table.column("sample_id")[0].as_py()
    assert set(lineage["stages"]) == {"reference_image", "initial_thinking", "initial_image", "improving_initial_thinking",
                                      "improving_thinking"}
    assert lineage["stages"]["initial_image"]["backend"]["id"] == "offline-world/base-model"
    assert "seed" in lineage["stages"]["initial_image"]
    assert lineage["schema_version"] == schema.schema_version()
    questions = pq.read_table(next((all_modes_dataset / "data" / "improving_thinking_understanding_learning")
                                   .glob("*.parquet"))).column("question").to_pylist()
    assert len(set(questions)) == 1 and "improve" in questions[0]


def test_card_has_configs_for_every_mode(all_modes_dataset):
    import yaml

    text = (all_modes_dataset / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert [c["config_name"] for c in header["configs"]] == list(schema.MODE_KEYS)
    assert "sourced = accepted + rejected" in text
