"""`python -m curation.export data=<dataset dir> format=irg out=<dir>`: the official IRG SFT layout.

For each mode folder of the dataset it writes `<out>/<mode_key>/part-NNNNN.parquet` with one
`conversation` column (IRGL.md "The official on-disk format"): the mode's schema sequence in
order, user segments as user turns, consecutive assistant segments merged into one assistant
turn, images as base64 of their encoded files (the shard's bytes, unchanged), flags from the
schema. Row groups are small, because the official reader holds one at a time. Beside the
folders, `<out>/parquet_info/<mode_key>.json` lists every file's row groups and rows, keyed by
the file's absolute path — the form of BAGEL's `parquet_info_path`.

The official reader silently skips a row whose JSON does not parse and an image part that does
not decode. So every row is read back with a strict reader before it is written; a row that
fails is an error naming the mode, the sample and the reason, and the mode's output is not
written at all (files are staged and moved into place whole).
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from curation.core import schema
from curation.core.config import load_config, wants_help
from curation.trainer.official_format import OfficialFormatError, parse_conversation

log = logging.getLogger("curation.export")

USAGE = """usage: python -m curation.export data=<dataset dir> format=irg out=<dir> [row_group_rows=64 rows_per_file=10000]"""

CONVERSATION = pa.schema([("conversation", pa.string())])


class ExportError(ValueError):
    pass


def conversation(mode: schema.ModeSchema, row: dict[str, Any]) -> list[dict]:
    turns: list[dict] = []
    for seg in mode.sequence:
        value = row[seg.column]
        if value is None:
            raise ExportError(f"{mode.mode}/{row['sample_id']}: column {seg.column} is null")
        if mode.column(seg.column).is_image:
            if seg.turn != "assistant":
                raise ExportError(f"{mode.mode}: image {seg.column} is in a user turn; the format has user text only")
            if not value.get("bytes"):
                raise ExportError(f"{mode.mode}/{row['sample_id']}: image {seg.column} has no bytes")
            part = {"type": "image", "content": base64.b64encode(value["bytes"]).decode("ascii"),
                    "need_loss": seg.loss, "need_vae": seg.vae, "need_vit": seg.vit}
        elif seg.turn == "user":
            turns.append({"role": "user", "content": value, "need_loss": seg.loss})
            continue
        else:
            part = {"type": "text", "content": value, "need_loss": seg.loss}
        if turns and turns[-1]["role"] == "assistant":
            turns[-1]["content"].append(part)
        else:
            turns.append({"role": "assistant", "content": [part]})
    return turns


def checked_json(mode: schema.ModeSchema, row: dict[str, Any]) -> str:
    text = json.dumps(conversation(mode, row), ensure_ascii=False)
    try:
        parse_conversation(text)  # the strict reader: JSON parses, every image decodes, no empty part
    except OfficialFormatError as exc:
        raise ExportError(f"{mode.mode}/{row['sample_id']}: {exc}") from exc
    return text


def source_rows(folder: Path, batch_rows: int) -> Iterator[dict[str, Any]]:
    for path in sorted(folder.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            yield from batch.to_pylist()


def export_mode(data: Path, mode_key: str, out: Path, row_group_rows: int, rows_per_file: int) -> dict[str, dict]:
    mode = schema.load(mode_key)
    staging = out / f".staging-{mode_key}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    writer, rows_in_file, files, group = None, 0, 0, []

    def flush() -> None:
        writer.write_table(pa.table({"conversation": group}, schema=CONVERSATION), row_group_size=row_group_rows)
        group.clear()

    try:
        for row in source_rows(data / "data" / mode_key, row_group_rows):
            if writer is None:
                writer = pq.ParquetWriter(staging / f"part-{files:05d}.parquet", CONVERSATION, compression="zstd")
            group.append(checked_json(mode, row))
            rows_in_file += 1
            if len(group) == row_group_rows:
                flush()
            if rows_in_file == rows_per_file:
                if group:
                    flush()
                writer.close()
                writer, rows_in_file, files = None, 0, files + 1
        if writer is not None:
            if group:
                flush()
            writer.close()
    except BaseException:
        if writer is not None:
            writer.close()
        shutil.rmtree(staging)
        raise
    final = out / mode_key
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return {str(path.resolve()): file_info(path) for path in sorted(final.glob("*.parquet"))}


def file_info(path: Path) -> dict:
    meta = pq.ParquetFile(path).metadata
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    return {"num_row_groups": meta.num_row_groups, "num_rows": meta.num_rows, "row_group_rows": groups}


def export_irg(data: Path, out: Path, *, row_group_rows: int, rows_per_file: int) -> Path:
    modes = [m for m in schema.MODE_KEYS if (data / "data" / m).is_dir()]
    if not modes:
        raise ExportError(f"{data}: no mode folders under data/ (expected data/<mode_key>/*.parquet)")
    (out / "parquet_info").mkdir(parents=True, exist_ok=True)
    for mode_key in modes:
        info = export_mode(data, mode_key, out, row_group_rows, rows_per_file)
        (out / "parquet_info" / f"{mode_key}.json").write_text(json.dumps(info, indent=2) + "\n")
        log.info("%s: %d rows in %d files", mode_key, sum(i["num_rows"] for i in info.values()), len(info))
    return out
