"""Validation catches each planted problem and names its kind, file and mode."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation.after_run import validate as validation
from curation.after_run.validate import Kind, validate

MODE = "improving_full_learning"


def shard(ds: Path, mode: str = MODE) -> Path:
    return next((ds / "data" / mode).glob("train-*.parquet"))


def rel(ds: Path, path: Path) -> str:
    return path.relative_to(ds).as_posix()


def kinds(problems) -> set[Kind]:
    return {p.kind for p in problems}


def test_a_sound_dataset_has_no_problems(publish_dataset):
    assert validate(publish_dataset, workers=1) == []


def test_missing_column_is_named(dataset_copy):
    path = shard(dataset_copy)
    pq.write_table(pq.read_table(path).drop_columns(["improving_thinking"]), path)
    problems = validate(dataset_copy, workers=1)
    missing = [p for p in problems if p.kind is Kind.COLUMN_MISSING]
    assert [(p.file, p.mode) for p in missing] == [(rel(dataset_copy, path), MODE)]
    assert "improving_thinking" in missing[0].detail


def test_image_that_does_not_decode_is_named(dataset_copy):
    path = shard(dataset_copy)
    table = pq.read_table(path)
    images = table.column("initial_image").to_pylist()
    images[1] = {"bytes": images[1]["bytes"][:200], "path": images[1]["path"]}  # a truncated PNG
    column = pa.array(images, type=table.schema.field("initial_image").type)
    pq.write_table(table.set_column(table.schema.get_field_index("initial_image"), "initial_image", column), path)
    problems = validate(dataset_copy, workers=1)
    assert kinds(problems) == {Kind.IMAGE_UNDECODABLE}
    (problem,) = problems
    assert (problem.file, problem.mode) == (rel(dataset_copy, path), MODE)
    assert table.column("sample_id")[1].as_py() in problem.detail and "initial_image" in problem.detail


def test_count_that_disagrees_with_the_manifest_is_named(dataset_copy):
    doc = json.loads((dataset_copy / "manifest.json").read_text())
    doc["modes"][MODE]["accepted"] += 1
    doc["modes"][MODE]["sourced"] += 1
    (dataset_copy / "manifest.json").write_text(json.dumps(doc))
    problems = validate(dataset_copy, workers=1)
    assert kinds(problems) == {Kind.COUNT_MISMATCH}
    assert {p.mode for p in problems} == {MODE}


def test_mode_missing_from_the_card_is_named(dataset_copy):
    readme = dataset_copy / "README.md"
    text = readme.read_text()
    block = f"- config_name: {MODE}\n  data_files:\n  - split: train\n    path: data/{MODE}/train-*\n"
    assert block in text
    readme.write_text(text.replace(block, ""))
    problems = validate(dataset_copy, workers=1)
    assert [(p.kind, p.file, p.mode) for p in problems] == [(Kind.MODE_NOT_IN_CARD, "README.md", MODE)]


def test_stray_shard_and_missing_rejects_are_named(dataset_copy):
    stray = dataset_copy / "data" / MODE / ".part-00000.parquet"
    stray.write_bytes(shard(dataset_copy).read_bytes())
    (dataset_copy / "rejects" / "rejects.parquet").unlink()
    found = {(p.kind, p.file) for p in validate(dataset_copy, workers=1)}
    assert (Kind.SHARD_NOT_IN_MANIFEST, rel(dataset_copy, stray)) in found
    assert (Kind.REJECTS_MISSING, "rejects/rejects.parquet") in found


def test_worker_processes_find_the_same_problems(dataset_copy, monkeypatch):
    path = shard(dataset_copy, "initial_full_learning")
    table = pq.read_table(path)
    images = [{"bytes": b"not an image", "path": i["path"]} for i in table.column("image").to_pylist()]
    column = pa.array(images, type=table.schema.field("image").type)
    pq.write_table(table.set_column(table.schema.get_field_index("image"), "image", column), path)
    inline = validate(dataset_copy, workers=1)
    monkeypatch.setattr(validation, "PARALLEL_BYTES", 0)
    parallel = validate(dataset_copy, workers=2)
    # Pillow's messages quote object addresses, which differ between processes; compare the rest.
    assert [(p.kind, p.file, p.mode) for p in parallel] == [(p.kind, p.file, p.mode) for p in inline]
    # Every row is broken: a few examples are listed, the rest counted in one more problem.
    assert len(inline) == validation.EXAMPLES_PER_KIND + 1
    assert {p.kind for p in inline} == {Kind.IMAGE_UNDECODABLE}


def _rewrite_ids(path: Path, change) -> list[str]:
    table = pq.read_table(path)
    ids = change(table.column("sample_id").to_pylist())
    index = table.schema.get_field_index("sample_id")
    pq.write_table(table.set_column(index, "sample_id", pa.array(ids, pa.string())), path)
    return ids


def test_a_repeated_sample_id_is_found_without_holding_every_id(dataset_copy):
    path = shard(dataset_copy)
    ids = _rewrite_ids(path, lambda ids: [ids[0], ids[0], *ids[2:]])  # still in order: the twins are neighbours
    problems = validate(dataset_copy, workers=1)
    dup = [p for p in problems if p.kind is Kind.DUPLICATE_SAMPLE_ID]
    assert len(dup) == 1 and dup[0].mode == MODE and "1 row(s)" in dup[0].detail
    assert Kind.ROWS_OUT_OF_ORDER not in kinds(problems)
    assert len(ids) >= 3


def test_rows_out_of_sample_id_order_are_named_and_repeats_still_counted_exactly(dataset_copy):
    path = shard(dataset_copy)
    _rewrite_ids(path, lambda ids: [ids[1], ids[0], *ids[2:]])  # swapped: no repeat
    assert kinds(validate(dataset_copy, workers=1)) == {Kind.ROWS_OUT_OF_ORDER}
    ids = _rewrite_ids(path, lambda ids: [ids[-1], *ids[1:]])  # the last id again, far from its twin
    problems = validate(dataset_copy, workers=1)
    assert kinds(problems) == {Kind.ROWS_OUT_OF_ORDER, Kind.DUPLICATE_SAMPLE_ID}
    (dup,) = [p for p in problems if p.kind is Kind.DUPLICATE_SAMPLE_ID]
    assert "1 sample id(s)" in dup.detail and ids[-1] in dup.detail
