"""`python -m curation.export data=<dataset dir> format=irg out=<dir>`: the official IRG SFT layout.

For each mode folder of the dataset it writes `<out>/<mode_key>/part-NNNNN.parquet` with one
`conversation` column (IRGL.md "The official on-disk format"): the mode's schema sequence in
order, user segments as user turns, consecutive assistant segments merged into one assistant
turn, images as base64 of their stored files (the shard's bytes, never decoded or re-encoded),
flags from the schema. Row groups are small, because the official reader holds one at a time.
Beside the folders, `<out>/parquet_info/<mode_key>.json` lists every file's row groups and rows,
keyed by the file's absolute path — the form of BAGEL's `parquet_info_path` — and
`<out>/trainer/` holds the official trainer's dataset entries and stage-1/stage-2 configs
(`trainer_config.py`).

Fast and bounded at IRGL-300K: output file `k` of a mode holds the mode's rows
`[k * rows_per_file, (k + 1) * rows_per_file)` in shard order, so files are independent tasks,
run in `processes` worker processes, each reading one source row group at a time. The output
does not depend on the number of processes.

The official reader silently skips a row whose JSON does not parse and an image part that does
not decode. The JSON is written by `json.dumps`, so it parses; every part is checked to be
non-empty, and every image to be whole (`check_image`: a PNG's chunk CRCs and its end chunk,
without decoding pixels; other formats are decoded). A row that fails is an error naming the
mode, the sample and the reason, and no mode folder is written at all (files are staged, and
moved into place only when every file of every mode is done).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import struct
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.core import images, schema
from curation.publish import emit

log = logging.getLogger("curation.export")

USAGE = """usage: python -m curation.export data=<dataset dir> format=irg out=<dir>
                                       [processes=0 row_group_rows=64 rows_per_file=10000 gpus=8 workers=8]
  writes one folder of conversation Parquet files per mode, parquet_info/, and trainer/ (dataset entries and
  stage-1/stage-2 configs for the official IRG trainer, sized for gpus × workers data-loader workers)."""

CONVERSATION = pa.schema([("conversation", pa.string())])
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EMPTY_CONTENT = '"content": ""'  # as json.dumps writes it (default separators)
#: With processes=0, below this many source bytes one process is faster than spawning several (~1-2 s each).
PARALLEL_BYTES = 256 * 1024 * 1024


class ExportError(ValueError):
    pass


# ----------------------------------------------------------------------------- one row


def check_image(data: bytes) -> None:
    """Raise `ExportError` unless the image file is whole.

    A PNG is checked chunk by chunk (every CRC, then the IEND chunk), which catches truncation and
    any flipped byte at memory speed; anything else is decoded (Pillow), as the trainer would.
    """
    if data.startswith(PNG_SIGNATURE):
        view, pos = memoryview(data), len(PNG_SIGNATURE)
        while pos + 12 <= len(data):
            (length,) = struct.unpack_from(">I", data, pos)
            end = pos + 12 + length
            if end > len(data):
                break
            (crc,) = struct.unpack_from(">I", data, end - 4)
            if zlib.crc32(view[pos + 4:end - 4]) != crc:
                raise ExportError(f"PNG chunk {bytes(view[pos + 4:pos + 8])!r} at byte {pos} fails its CRC")
            if view[pos + 4:pos + 8] == b"IEND":
                return
            pos = end
        raise ExportError(f"PNG is truncated: no IEND chunk in its {len(data)} bytes")
    try:
        images.probe(data)
    except images.ImageDecodeError as exc:
        raise ExportError(f"image does not decode: {exc}") from exc


def conversation(mode: schema.ModeSchema, row: dict[str, Any]) -> list[dict]:
    turns: list[dict] = []
    for seg in mode.sequence:
        value = row[seg.column]
        where = f"{mode.mode}/{row['sample_id']}: column {seg.column}"
        if value is None:
            raise ExportError(f"{where} is null")
        if mode.column(seg.column).is_image:
            if seg.turn != "assistant":
                raise ExportError(f"{mode.mode}: image {seg.column} is in a user turn; the format has user text only")
            data = value.get("bytes")
            if not data:
                raise ExportError(f"{where} has no image bytes")
            try:
                check_image(data)
            except ExportError as exc:
                raise ExportError(f"{where}: {exc}") from None
            part = {"type": "image", "content": base64.b64encode(data).decode("ascii"),
                    "need_loss": seg.loss, "need_vae": seg.vae, "need_vit": seg.vit}
        elif not value:
            raise ExportError(f"{where} is empty (the official reader drops an empty part)")
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


def conversation_json(mode: schema.ModeSchema, row: dict[str, Any]) -> str:
    """`json.dumps(conversation(...), ensure_ascii=False)`, character for character, but faster.

    Images are most of the bytes, and `json.dumps` scans every base64 character for escapes; base64
    has none. So the conversation is dumped with empty image contents and the base64 text put in
    their place: `"content": ""` occurs in that dump only for images, since every text content is
    non-empty and a quote inside a JSON string is always escaped.
    """
    turns = conversation(mode, row)
    blobs = []
    for turn in turns:
        for part in turn["content"] if turn["role"] == "assistant" else ():
            if part["type"] == "image":
                blobs.append(part["content"])
                part["content"] = ""
    pieces = json.dumps(turns, ensure_ascii=False).split(EMPTY_CONTENT)
    if len(pieces) != len(blobs) + 1:
        raise AssertionError(f"{mode.mode}/{row['sample_id']}: {len(pieces) - 1} empty contents for {len(blobs)} images")
    out = [pieces[0]]
    for blob, piece in zip(blobs, pieces[1:], strict=True):
        out += ['"content": "', blob, '"', piece]
    return "".join(out)


# ----------------------------------------------------------------------------- one output file


@dataclass(frozen=True)
class Piece:
    """Rows `[start, start + rows)` of one row group of one source shard."""

    path: str
    group: int
    start: int
    rows: int


@dataclass(frozen=True)
class FileTask:
    mode: str
    number: int  # part-NNNNN
    pieces: tuple[Piece, ...]
    staging: str
    row_group_rows: int


def plan_mode(data: Path, mode_key: str, staging: Path, rows_per_file: int, row_group_rows: int) -> list[FileTask]:
    """Cut the mode's rows, in shard order, into output files of `rows_per_file` rows (footers only)."""
    groups = []  # (path, group, rows) in reading order
    for path in sorted((data / "data" / mode_key).glob("*.parquet")):
        meta = pq.ParquetFile(path).metadata
        groups += [(str(path), g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    tasks, pieces, room = [], [], rows_per_file
    for path, group, rows in groups:
        start = 0
        while start < rows:
            take = min(room, rows - start)
            pieces.append(Piece(path, group, start, take))
            start, room = start + take, room - take
            if room == 0:
                tasks.append(FileTask(mode_key, len(tasks), tuple(pieces), str(staging), row_group_rows))
                pieces, room = [], rows_per_file
    if pieces:
        tasks.append(FileTask(mode_key, len(tasks), tuple(pieces), str(staging), row_group_rows))
    return tasks


def part_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def export_file(task: FileTask) -> str:
    """Write one output file; one source row group and one output row group in memory at a time."""
    mode = schema.load(task.mode)
    columns = ["sample_id", *dict.fromkeys(seg.column for seg in mode.sequence)]
    path = Path(task.staging) / part_name(task.number)
    group: list[str] = []
    readers: dict[str, pq.ParquetFile] = {}  # a file's footer is parsed once, not once per row group
    # Each value is a whole conversation, unique and large: a dictionary or min/max statistics of
    # them cost time and help no reader.
    with pq.ParquetWriter(path, CONVERSATION, compression="zstd", use_dictionary=False,
                          write_statistics=False) as writer:
        for piece in task.pieces:
            reader = readers.get(piece.path) or readers.setdefault(piece.path, pq.ParquetFile(piece.path))
            table = reader.read_row_group(piece.group, columns=columns)
            for row in table.slice(piece.start, piece.rows).to_pylist():
                group.append(conversation_json(mode, row))
                if len(group) == task.row_group_rows:
                    writer.write_table(pa.table({"conversation": group}, schema=CONVERSATION))
                    group.clear()
        if group:
            writer.write_table(pa.table({"conversation": group}, schema=CONVERSATION))
    return str(path)


# ----------------------------------------------------------------------------- the whole export


def file_info(path: Path) -> dict:
    meta = pq.ParquetFile(path).metadata
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    return {"num_row_groups": meta.num_row_groups, "num_rows": meta.num_rows, "row_group_rows": groups}


def export_irg(data: Path, out: Path, *, row_group_rows: int, rows_per_file: int,
               processes: int | None = None) -> dict[str, dict[str, dict]]:
    """Export every mode; returns `{mode: parquet info}` (what `parquet_info/<mode>.json` holds)."""
    data, out = Path(data), Path(out)
    modes = [m for m in schema.MODE_KEYS if (data / "data" / m).is_dir()]
    if not modes:
        raise ExportError(f"{data}: no mode folders under data/ (expected data/<mode_key>/*.parquet)")
    if row_group_rows < 1 or rows_per_file < 1:
        raise ExportError("row_group_rows and rows_per_file must be positive")
    (out / "parquet_info").mkdir(parents=True, exist_ok=True)
    stagings = {m: out / f".staging-{m}" for m in modes}
    tasks: list[FileTask] = []
    for mode_key, staging in stagings.items():
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed export
        staging.mkdir(parents=True)
        tasks += plan_mode(data, mode_key, staging, rows_per_file, row_group_rows)
    if not processes:  # auto: one per CPU, unless starting them costs more than the work
        size = sum(path.stat().st_size for m in modes for path in (data / "data" / m).glob("*.parquet"))
        processes = (os.cpu_count() or 1) if size >= PARALLEL_BYTES else 1
    processes = max(1, min(processes, len(tasks) or 1))
    try:
        if processes == 1:
            for task in tasks:
                export_file(task)
        else:
            # spawn, not fork: pyarrow's thread pools do not survive a fork reliably.
            with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(export_file, task) for task in tasks]
                try:
                    for future in futures:  # in task order: the first failing file's error, whatever finished first
                        future.result()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    except BaseException:
        for staging in stagings.values():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    infos = {}
    for mode_key, staging in stagings.items():
        final = out / mode_key
        emit.replace_dir(staging, final)
        info = {str(p.resolve()): file_info(p) for p in sorted(final.glob("*.parquet"))}
        (out / "parquet_info" / f"{mode_key}.json").write_text(json.dumps(info, indent=2) + "\n")
        log.info("%s: %d rows in %d files", mode_key, sum(i["num_rows"] for i in info.values()), len(info))
        infos[mode_key] = info
    return infos
