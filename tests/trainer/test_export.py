"""`python -m curation.export format=irg`: the official layout, read back with the strict reader."""

from __future__ import annotations

import base64
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.core import schema
from curation.export import main
from curation.publish.export import ExportError
from curation.trainer.official_format import read_folder, read_info

U, A = "user", "assistant"
# The turns of each mode as IRGL.md's table and its format section describe them: user text
# turns; consecutive assistant segments merged into one assistant turn; each part as
# (type, column, need_loss, need_vae, need_vit).
EXPECTED_TURNS = {
    "initial_thinking_understanding_learning": [
        (U, [("text", "prompt", False, False, False)]),
        (A, [("image", "image", False, True, True)]),
        (U, [("text", "question", False, False, False)]),
        (A, [("text", "initial_thinking", True, False, False)]),
    ],
    "initial_thinking_generation_learning": [
        (U, [("text", "prompt", False, False, False)]),
        (A, [("text", "initial_thinking", True, False, False)]),
    ],
    "initial_full_learning": [
        (U, [("text", "prompt", False, False, False)]),
        (A, [("text", "initial_thinking", True, False, False), ("image", "image", True, False, False)]),
    ],
    "improving_thinking_understanding_learning": [
        (U, [("text", "prompt", False, False, False)]),
        (A, [("image", "initial_image", False, True, True), ("image", "improved_image", False, True, True)]),
        (U, [("text", "question", False, False, False)]),
        (A, [("text", "improving_thinking", True, False, False)]),
    ],
    "improving_thinking_generation_learning": [
        (U, [("text", "prompt", False, False, False)]),
        (A, [("text", "initial_thinking", False, False, False), ("image", "initial_image", False, True, True),
             ("text", "improving_thinking", True, False, False)]),
    ],
    "improving_full_learning": [
        (U, [("text", "prompt", False, False, False)]),
        (A, [("text", "initial_thinking", False, False, False), ("image", "initial_image", False, True, True),
             ("text", "improving_thinking", True, False, False), ("image", "improved_image", True, False, False)]),
    ],
}


def test_export_round_trip(offline_dataset, tmp_path):
    out = main([f"data={offline_dataset}", "format=irg", f"out={tmp_path}/irg", "row_group_rows=5",
                "rows_per_file=8"])
    for mode in schema.MODE_KEYS:
        source = pq.read_table(offline_dataset / "data" / mode).to_pylist()
        rows = list(read_folder(out / mode))  # strict: raises on bad JSON, undecodable image, empty part
        assert len(rows) == len(source) == 12

        expected_parts = [(role, *part) for role, parts in EXPECTED_TURNS[mode] for part in parts]
        for row, src in zip(rows, source):
            flags = [(p.role, p.type, p.need_loss, p.need_vae, p.need_vit) for p in row.parts]
            assert flags == [(role, kind, loss, vae, vit) for role, kind, _, loss, vae, vit in expected_parts]
            for part, (_, kind, column, *_flags) in zip(row.parts, expected_parts):
                assert part.content == (src[column]["bytes"] if kind == "image" else src[column])

        raw = json.loads(pq.read_table(out / mode).column("conversation")[0].as_py())
        assert [(t["role"], len(t["content"]) if t["role"] == A else 1) for t in raw] == \
               [(role, len(parts)) for role, parts in EXPECTED_TURNS[mode]]
        for part in (p for t in raw if t["role"] == A for p in t["content"] if p["type"] == "image"):
            assert set(part) == {"type", "content", "need_loss", "need_vae", "need_vit"}
            base64.b64decode(part["content"], validate=True)

        info = read_info(out / "parquet_info" / f"{mode}.json")
        files = sorted(str(p.resolve()) for p in (out / mode).glob("*.parquet"))
        assert sorted(info) == files and len(files) == 2  # 12 rows, 8 per file
        for path, entry in info.items():
            meta = pq.ParquetFile(path).metadata
            assert entry == {"num_row_groups": meta.num_row_groups, "num_rows": meta.num_rows,
                             "row_group_rows": [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]}
            assert max(entry["row_group_rows"]) <= 5


def test_a_row_with_an_undecodable_image_is_never_written(handmade_dataset, tmp_path):
    data = tmp_path / "data_copy"
    shutil.copytree(handmade_dataset, data)
    mode = "initial_full_learning"
    path = data / "data" / mode / "train-00000-of-00001.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[3]["image"] = {"bytes": rows[3]["image"]["bytes"][:40], "path": None}  # a truncated PNG
    pq.write_table(pa.Table.from_pylist(rows, schema=schema.load(mode).arrow_schema()), path)

    with pytest.raises(ExportError, match=rows[3]["sample_id"]):
        main([f"data={data}", "format=irg", f"out={tmp_path}/irg"])
    assert not (tmp_path / "irg" / mode).exists()
    assert not list((tmp_path / "irg").glob(".staging-*"))


def test_only_the_irg_format_is_known(handmade_dataset, tmp_path):
    with pytest.raises(ExportError, match="format"):
        main([f"data={handmade_dataset}", "format=llava", f"out={tmp_path}/x"])
