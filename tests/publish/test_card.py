"""The card: plots next to it, the lineage summary, how each mode was built, the citation."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from curation.writer import card, manifest
from curation.after_run.validate import Kind, card_header, validate

MODE = "improving_full_learning"


def test_card_links_its_plots_and_says_how_the_data_was_made(publish_dataset):
    text = (publish_dataset / "README.md").read_text()
    doc = manifest.read(publish_dataset)
    assert [c["config_name"] for c in card_header(text)["configs"]] == list(doc["modes"])
    for name in ("counts", "accept_rate", "checker", "thinking_lengths", "image_sizes"):
        path = publish_dataset / "assets" / f"{name}.png"
        assert f"](assets/{name}.png)" in text
        with Image.open(path) as img:
            assert img.format == "PNG"
        assert path.stat().st_size < 150_000
    assert "arXiv:2509.06945" in text and "Interleaving Reasoning for Better Text-to-Image Generation" in text
    build = text.split("## How each mode was built")[1].split("## ")[0]
    assert all(f"`{mode}`" in build for mode in doc["modes"])
    assert all(f"`{b['id']}`" in text for b in doc["backends"].values())
    # Every prompt the rows were made with: the stages' own templates (offline too) and the questions.
    assert ("Template versions: improving_thinking teacher_improving_thinking@2, initial_thinking "
            "teacher_initial_thinking@2, questions 1") in text
    # The rejects planted by the fixture show up per stage: 2 of 9 sourced samples never reach the teacher.
    assert "| `improving_full` | 88.9% | 87.5% | 100.0% |" in text


def test_render_from_the_manifest_alone_still_works(publish_dataset):
    """What run.py calls today: no shards read, no plots, the rest of the card intact."""
    text = card.render(manifest.read(publish_dataset))
    assert "](assets/" not in text
    assert "## How each mode was built" in text and "arXiv:2509.06945" in text


def test_the_cost_table_is_the_backends_accounting_from_the_manifest(dataset_copy: Path):
    """Tokens and time live in the manifest (lineage holds only what determines a row)."""
    doc = manifest.read(dataset_copy)
    doc["run"]["backends"] = {"teacher": {"calls": 12, "prompt_tokens": 10800, "completion_tokens": 1200,
                                          "wall_s": 24.5}}
    card.write(dataset_copy, doc)
    text = (dataset_copy / "README.md").read_text()
    assert "| role | calls | prompt_tokens | completion_tokens | wall_s |" in text
    assert "| teacher | 12 | 10,800 | 1,200 | 24.50 |" in text
    rows = [json.loads(v) for p in (dataset_copy / "data").rglob("*.parquet")
            for v in pq.read_table(p, columns=["lineage"])["lineage"].to_pylist()]
    assert rows and not any(k in stage for r in rows for stage in r["stages"].values()
                            for k in ("latency_s", "attempts", "prompt_tokens", "completion_tokens"))
    assert [p.kind for p in validate(dataset_copy, workers=1)] == []


def test_plots_of_an_earlier_card_do_not_linger(dataset_copy: Path):
    (dataset_copy / "assets" / "old_plot.png").write_bytes(b"stale")
    card.write(dataset_copy, manifest.read(dataset_copy))
    assert not (dataset_copy / "assets" / "old_plot.png").exists()
    assert Kind.CARD_ASSET_MISSING not in {p.kind for p in validate(dataset_copy, workers=1)}


def test_same_named_folders_with_different_data_do_not_share_a_load_cache(publish_dataset, dataset_copy,
                                                                          tmp_path, monkeypatch):
    """`load_dataset(<folder>)` keys its cache on the folder name and the card header only."""
    import datasets

    assert publish_dataset.name == dataset_copy.name
    path = next((dataset_copy / "data" / MODE).glob("train-*.parquet"))
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)
    doc = manifest.read(dataset_copy)
    entry = doc["modes"][MODE]
    entry["accepted"] -= 1
    entry["sourced"] -= 1
    entry["shards"] = [{**entry["shards"][0], "rows": table.num_rows - 1, "bytes": path.stat().st_size}]
    manifest.write(dataset_copy, manifest.Manifest.from_json(doc))
    card.write(dataset_copy, doc)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    first = datasets.load_dataset(str(publish_dataset), MODE, split="train")
    second = datasets.load_dataset(str(dataset_copy), MODE, split="train")
    assert (len(first), len(second)) == (table.num_rows, table.num_rows - 1)


def test_loading_a_built_dataset_prints_no_warning_about_the_card(publish_dataset, tmp_path, monkeypatch):
    """`datasets` checks the card's `dataset_info` splits on every load; a malformed one warns each time."""
    import logging
    import warnings

    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    library = logging.getLogger("datasets")  # `datasets` does not propagate to the root logger
    library.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = datasets.load_dataset(str(publish_dataset), MODE, split="train")
    finally:
        library.removeHandler(handler)
    assert len(loaded) == manifest.read(publish_dataset)["modes"][MODE]["accepted"]
    assert [r.getMessage() for r in records] == []
    assert [str(w.message) for w in caught if "YAML" in str(w.message) or "splits" in str(w.message)] == []


def test_split_sizes_in_the_card_header_come_from_the_shards(publish_dataset):
    header = card_header((publish_dataset / "README.md").read_text())
    for entry in header["dataset_info"]:
        paths = sorted((publish_dataset / "data" / entry["config_name"]).glob("*.parquet"))
        size = sum(pq.ParquetFile(p).metadata.row_group(i).total_byte_size
                   for p in paths for i in range(pq.ParquetFile(p).metadata.num_row_groups))
        (split,) = entry["splits"]
        assert split == {"name": "train", "num_bytes": size, "num_examples": pq.read_metadata(paths[0]).num_rows
                         if len(paths) == 1 else sum(pq.read_metadata(p).num_rows for p in paths)}
        assert entry["dataset_size"] == size > 0
