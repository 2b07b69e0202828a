"""`python -m curation.export format=irg`: the official layout, read back with the strict reader."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from curation.core import schema
from curation.export import main
from curation.after_run.export import ConversationJson, ExportError, check_image, conversation
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


@pytest.mark.parametrize("processes", [1, 2])
def test_a_row_with_an_undecodable_image_is_never_written(handmade_dataset, tmp_path, processes):
    data = tmp_path / "data_copy"
    shutil.copytree(handmade_dataset, data)
    mode = "initial_full_learning"
    path = data / "data" / mode / "train-00000-of-00001.parquet"
    rows = pq.read_table(path).to_pylist()
    rows[3]["image"] = {"bytes": rows[3]["image"]["bytes"][:40], "path": None}  # a truncated PNG
    pq.write_table(pa.Table.from_pylist(rows, schema=schema.load(mode).arrow_schema()), path)

    with pytest.raises(ExportError, match=rows[3]["sample_id"]):
        main([f"data={data}", "format=irg", f"out={tmp_path}/irg", f"processes={processes}", "rows_per_file=2"])
    assert not (tmp_path / "irg" / mode).exists()
    assert not list((tmp_path / "irg").glob(".staging-*"))


def test_only_the_irg_format_is_known(handmade_dataset, tmp_path):
    with pytest.raises(ExportError, match="format"):
        main([f"data={handmade_dataset}", "format=llava", f"out={tmp_path}/x"])


def test_export_is_the_same_with_any_number_of_processes(offline_dataset, tmp_path):
    args = [f"data={offline_dataset}", "format=irg", "row_group_rows=3", "rows_per_file=5"]
    one = main([*args, f"out={tmp_path}/one", "processes=1"])
    two = main([*args, f"out={tmp_path}/two", "processes=2"])
    files = sorted(p.relative_to(one).as_posix() for p in one.rglob("*.parquet"))
    assert len(files) == 6 * 3  # 12 rows per mode, 5 per file
    assert files == sorted(p.relative_to(two).as_posix() for p in two.rglob("*.parquet"))
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)


def test_export_on_one_core_runs_without_threads_and_writes_the_same_files(offline_dataset, tmp_path, monkeypatch):
    from curation.after_run import export

    args = [f"data={offline_dataset}", "format=irg", "row_group_rows=3", "rows_per_file=5", "processes=1"]
    threaded = main([*args, f"out={tmp_path}/threaded"])
    monkeypatch.setattr(export, "usable_cpus", lambda: 1)  # the name export_file calls
    monkeypatch.setattr(export.emit, "WriteBehind", None)  # any use of the write-behind thread fails
    single = main([*args, f"out={tmp_path}/single"])
    files = sorted(p.relative_to(threaded).as_posix() for p in threaded.rglob("*.parquet"))
    assert len(files) == 18
    assert all((threaded / f).read_bytes() == (single / f).read_bytes() for f in files)


def test_compression_changes_the_codec_not_the_conversations(offline_dataset, tmp_path):
    args = [f"data={offline_dataset}", "format=irg", "processes=1"]
    packed = main([*args, f"out={tmp_path}/zstd"])
    plain = main([*args, f"out={tmp_path}/none", "compression=none"])
    for path in sorted(packed.glob("*/*.parquet")):
        other = plain / path.relative_to(packed)
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
        assert pq.ParquetFile(other).metadata.row_group(0).column(0).compression == "UNCOMPRESSED"
        assert pq.read_table(path) == pq.read_table(other)
    with pytest.raises(ExportError, match="compression=zip"):
        main([*args, f"out={tmp_path}/bad", "compression=zip"])


def official_units_per_worker(stage: dict, entries: dict, gpus: int, workers: int) -> dict[str, list[int]]:
    """What the official SFT data code (SFT/data of the IRG repository) gives each data-loader worker:
    the folder's files repeated to `num_used_data` paths, one unit per (path, row group), split evenly
    over ranks and then over each rank's workers, both rounding down."""
    out = {}
    for mode, group in stage.items():
        (name,) = group["dataset_names"]
        (used,) = group["num_used_data"]
        entry = entries[mode][name]
        info = json.loads(Path(entry["parquet_info_path"]).read_text())
        names = sorted(os.listdir(entry["data_dir"]), reverse=True)  # the reader's listing order is arbitrary
        paths = [os.path.join(entry["data_dir"], n) for n in names if n.endswith(".parquet")]
        paths = (paths * (used // len(paths) + 1))[:used]
        units = sum(info[p]["num_row_groups"] for p in paths)
        per_rank = units // gpus
        out[mode] = [per_rank // workers] * (gpus * workers)
    return out


@pytest.mark.parametrize("gpus,workers", [(8, 8), (3, 5)])
def test_trainer_configs_leave_no_worker_empty(offline_dataset, tmp_path, gpus, workers):
    out = main([f"data={offline_dataset}", "format=irg", f"out={tmp_path}/irg", "row_group_rows=4",
                "rows_per_file=8", f"gpus={gpus}", f"workers={workers}"])
    entries = json.loads((out / "trainer" / "dataset_info.json").read_text())
    assert set(entries) == set(schema.MODE_KEYS)
    for mode, named in entries.items():
        assert named == {"irgl": {"data_dir": str((out / mode).resolve()),
                                  "parquet_info_path": str((out / "parquet_info" / f"{mode}.json").resolve())}}
    stage1 = yaml.safe_load((out / "trainer" / "stage1.yaml").read_text())
    stage2 = yaml.safe_load((out / "trainer" / "stage2.yaml").read_text())
    assert set(stage1) == set(schema.MODE_KEYS) and set(stage2) == {"initial_full_learning", "improving_full_learning"}
    for stage in (stage1, stage2):
        for mode, group in stage.items():
            assert list(group) == ["dataset_names", "image_transform_args", "vit_image_transform_args",
                                   "is_mandatory", "num_used_data", "weight"]
            assert group["weight"] == (1.0 if mode.endswith("_full_learning") else 0.5)
            assert group["image_transform_args"] == {"image_stride": 16, "max_image_size": 1024, "min_image_size": 512}
            assert group["vit_image_transform_args"] == {"image_stride": 14, "max_image_size": 980,
                                                         "min_image_size": 378}
            assert group["is_mandatory"] == ("understanding" not in mode)
        for mode, shares in official_units_per_worker(stage, entries, gpus, workers).items():
            assert min(shares) >= 1, f"{mode}: an empty worker would loop forever"
    # 12 rows per mode: 2 files of 2 and 1 row groups, used equally often, and no more often than needed.
    (used,) = stage1["initial_full_learning"]["num_used_data"]
    assert used % 2 == 0 and used // 2 * 3 >= gpus * workers > (used // 2 - 1) * 3


def test_a_flipped_byte_in_a_png_is_caught_without_decoding(handmade_dataset, tmp_path):
    mode = "initial_full_learning"
    path = handmade_dataset / "data" / mode / "train-00000-of-00001.parquet"
    good = pq.read_table(path).column("image")[0].as_py()["bytes"]
    check_image(good)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x01
    with pytest.raises(ExportError, match="CRC"):
        check_image(bytes(bad))
    with pytest.raises(ExportError, match="truncated"):
        check_image(good[:-12])  # the IEND chunk is gone


def test_an_output_folder_that_cannot_be_made_is_one_sentence(handmade_dataset, tmp_path):
    done = subprocess.run([sys.executable, "-m", "curation.export", f"data={handmade_dataset}", "format=irg",
                           "out=/proc/irgl-export"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot create the export folder out=/proc/irgl-export")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_fast_json_is_exactly_json_dumps(handmade_dataset):
    """Images are spliced into the dump as text; any text, even one that looks like JSON, is still escaped."""
    mode = schema.load("improving_full_learning")
    row = pq.read_table(handmade_dataset / "data" / mode.mode).to_pylist()[0]
    row["prompt"] = 'say "content": "" and \\ "content": "x" \n 漢字'
    row["improving_thinking"] = '<think>{"role": "assistant", "content": ""}</think>'
    fast = ConversationJson(mode).rows(pa.Table.from_pylist([row], schema=mode.arrow_schema()))[0].decode()
    assert fast == json.dumps(conversation(mode, row), ensure_ascii=False)
    assert [p["content"] for t in json.loads(fast) if t["role"] == A for p in t["content"] if p["type"] == "image"] == [
        base64.b64encode(row[c]["bytes"]).decode() for c in ("initial_image", "improved_image")]


@pytest.mark.parametrize("column, value, reason", [
    ("initial_image", None, "is null"),
    ("initial_image", {"bytes": b"", "path": None}, "has no image bytes"),
    ("improving_thinking", "", "is empty"),
    ("prompt", None, "is null"),
])
def test_a_part_the_official_reader_would_drop_is_an_error_naming_the_row(handmade_dataset, column, value, reason):
    """Both the plain definition and the fast path refuse it, for a row anywhere in a row group."""
    mode = schema.load("improving_full_learning")
    rows = pq.read_table(handmade_dataset / "data" / mode.mode).to_pylist()
    assert len(rows) >= 3
    rows[2][column] = value
    with pytest.raises(ExportError, match=f"{rows[2]['sample_id']}: column {column} {reason}"):
        conversation(mode, rows[2])
    table = pa.Table.from_pylist(rows, schema=mode.arrow_schema())
    with pytest.raises(ExportError, match=f"{rows[2]['sample_id']}: column {column} {reason}"):
        ConversationJson(mode).rows(table)
    assert ConversationJson(mode).rows(table.slice(0, 2)) == [
        json.dumps(conversation(mode, row), ensure_ascii=False).encode() for row in rows[:2]]


def test_pngs_read_in_place_from_arrow_are_checked_without_decoding(handmade_dataset, monkeypatch):
    """The fast path hands `check_image` views of Arrow's buffers (signed bytes): a PNG must still be
    recognised as one and checked by its CRCs, never decoded."""
    from curation.core import images

    def no_decoding(data):
        raise AssertionError("a PNG was decoded")

    monkeypatch.setattr(images, "probe", no_decoding)
    mode = schema.load("improving_full_learning")
    table = pq.read_table(handmade_dataset / "data" / mode.mode)
    assert table.column("initial_image")[0].as_py()["bytes"].startswith(b"\x89PNG")
    assert ConversationJson(mode).rows(table.slice(1))  # a slice: views start past the buffer's start
