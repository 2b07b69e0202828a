"""The figures of the card and of the report are exactly what a plain full read of every row says.

`figures.collect` streams (one row group at a time, fixed-width histograms, counters, worker
processes over shards); this test reads every shard whole with pyarrow and Pillow, the obvious
way, and compares. The dataset has several shards per mode and several row groups per shard, so
merging partial statistics across row groups, shards and processes is what is under test.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation import report
from curation.core import schema
from curation.writer import card, figures, manifest
from tests.helpers import build

N = 150


@pytest.fixture(scope="module")
def sharded_dataset(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("figures")
    # 1 MB shards of 64-row groups: every image mode spans several shards, each of several row groups.
    out = build(tmp, "recipe=all", f"n={N}", "emit.shard_size_mb=1")
    doc = manifest.read(out)
    assert max(len(entry["shards"]) for entry in doc["modes"].values()) >= 3
    return out


def plain_full_read(out: Path, doc: dict) -> dict:
    """Every figure's numbers from whole tables, with no streaming and no cleverness."""
    rows, split_bytes, thinking, sizes = Counter(), Counter(), {}, {}
    models, templates, unreadable_lineage = {}, {}, 0
    for mode in doc["modes"]:
        mode_schema = schema.load(mode)
        for path in sorted((out / "data" / mode).glob("train-*.parquet")):
            meta = pq.ParquetFile(path).metadata
            split_bytes[mode] += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        table = pq.read_table(out / "data" / mode)
        rows[mode] = table.num_rows
        for col in figures.THINKING_COLUMNS:
            if col in table.column_names:
                thinking.setdefault(col, {})[mode] = [len(t) for t in table.column(col).to_pylist() if t is not None]
        for col in (c for c in mode_schema.columns if c.is_image):
            for value in table.column(col.name).to_pylist():
                with Image.open(io.BytesIO(value["bytes"])) as img:
                    img.load()
                    sizes.setdefault(col.source, Counter())[img.size] += 1
        for text in table.column("lineage").to_pylist():
            lineage = json.loads(text)
            for name, version in lineage.get("templates", {}).items():
                templates.setdefault(name, set()).add(str(version))
            for stage, info in lineage["stages"].items():
                if info.get("backend"):
                    models.setdefault(stage, set()).add((str(info["backend"]["id"]), str(info["backend"]["revision"])))
                if "template" in info:
                    templates.setdefault(stage, set()).add(str(info["template"]))
    return {"rows": rows, "split_bytes": split_bytes, "thinking": thinking, "sizes": sizes, "models": models,
            "templates": templates, "unreadable_lineage": unreadable_lineage}


@pytest.mark.parametrize("workers", [1, 2])
def test_streamed_figures_equal_a_plain_full_read(sharded_dataset, workers):
    doc = manifest.read(sharded_dataset)
    stats = figures.collect(sharded_dataset, doc, workers=workers)
    truth = plain_full_read(sharded_dataset, doc)
    assert stats.rows == truth["rows"] and sum(stats.rows.values()) == sum(e["accepted"] for e in doc["modes"].values())
    assert stats.split_bytes == truth["split_bytes"]
    assert stats.image_sizes == truth["sizes"] and stats.unreadable_images == 0
    assert stats.models == truth["models"] and stats.templates == truth["templates"]
    assert stats.unreadable_lineage == truth["unreadable_lineage"]
    assert set(stats.thinking_chars) == set(truth["thinking"])
    for col, by_mode in truth["thinking"].items():
        for mode, lengths in by_mode.items():
            hist, exact = stats.thinking_chars[col][mode], sorted(lengths)
            assert hist.counts == Counter(lengths)
            for q in (0.0, 0.5, 0.95, 1.0):  # the card's quantiles, against the sorted list
                assert hist.quantile(q) == exact[int(q * (len(exact) - 1))]


def test_card_and_report_show_the_same_figures(sharded_dataset, tmp_path):
    doc = manifest.read(sharded_dataset)
    card.write(sharded_dataset, doc, workers=2)
    index = report.main([f"data={sharded_dataset}", f"out={tmp_path / 'report'}", "workers=1"])
    embedded = dict(re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)"', index.read_text()))
    shown = {name: base64.b64decode(png) for png, name in embedded.items()}
    on_card = {p.name: p.read_bytes() for p in (sharded_dataset / "assets").glob("*.png")}
    assert shown == on_card and "thinking_lengths.png" in shown and "image_sizes.png" in shown
    truth = plain_full_read(sharded_dataset, doc)
    text = (sharded_dataset / "README.md").read_text()
    for col, by_mode in truth["thinking"].items():
        for mode, lengths in by_mode.items():
            q = sorted(lengths)
            line = (f"| {col} | `{schema.load(mode).short}` | {len(q)} | {q[0]} | {q[(len(q) - 1) // 2]} | "
                    f"{q[int(0.95 * (len(q) - 1))]} | {q[-1]} |")
            assert line in text


def test_the_report_reuses_the_cards_pass_while_the_shards_are_unchanged(sharded_dataset, tmp_path, monkeypatch):
    doc = manifest.read(sharded_dataset)
    fresh = card.write(sharded_dataset, doc, workers=1)
    assets = sharded_dataset / card.ASSETS
    assert figures.load_or_collect(sharded_dataset, doc, assets) == fresh  # a faithful round trip through JSON

    def no_reading(mode, path):
        raise AssertionError("the rows were read again")

    monkeypatch.setattr(figures, "shard_stats", no_reading)
    report.main([f"data={sharded_dataset}", f"out={tmp_path / 'report'}", "workers=1"])
    monkeypatch.undo()

    shard = next((sharded_dataset / "data" / "initial_full_learning").glob("train-*.parquet"))
    shard.write_bytes(shard.read_bytes())  # rewritten: the saved statistics no longer vouch for it
    called = []
    monkeypatch.setattr(figures, "shard_stats", lambda mode, path: called.append(path) or figures.Stats())
    figures.load_or_collect(sharded_dataset, doc, assets, workers=1)
    assert len(called) == len(figures.shard_files(sharded_dataset, doc))
