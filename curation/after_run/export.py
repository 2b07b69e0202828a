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
run in `processes` worker processes, each reading one source row group at a time. Within a file,
the next row group is read and the last one compressed and written on threads of their own while
the JSON is built; images are read in place from Arrow's buffers and the JSON is assembled from a
per-mode template (`ConversationJson`). The output does not depend on the number of processes.

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
import shutil
import struct
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation.core import images, schema
from curation.core.cpus import usable_cpus
from curation.writer import emit

log = logging.getLogger("curation.export")

USAGE = """usage: python -m curation.export data=<dataset dir> format=irg out=<dir>
                                       [processes=0 row_group_rows=64 rows_per_file=10000 compression=zstd
                                        gpus=8 workers=8]
  writes one folder of conversation Parquet files per mode, parquet_info/, and trainer/ (dataset entries and
  stage-1/stage-2 configs for the official IRG trainer, sized for gpus × workers data-loader workers)."""

CONVERSATION = pa.schema([("conversation", pa.string())])
#: Parquet codecs pyarrow (the official reader) reads. zstd, the default, makes files ~28% smaller
#: (base64 text still shrinks) at ~0.7 CPU-s per GB written; `none` saves that CPU for the space.
COMPRESSIONS = ("zstd", "snappy", "lz4", "gzip", "brotli", "none")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: With processes=0, below this many source bytes one process is faster than spawning several (~1-2 s each).
PARALLEL_BYTES = 256 * 1024 * 1024


class ExportError(ValueError):
    pass


# ----------------------------------------------------------------------------- one row


def check_image(data: bytes | memoryview) -> None:
    """Raise `ExportError` unless the image file is whole.

    A PNG is checked chunk by chunk (every CRC, then the IEND chunk), which catches truncation and
    any flipped byte at memory speed; anything else is decoded (Pillow), as the trainer would.
    """
    view = memoryview(data).cast("B")  # an Arrow buffer's view is signed bytes ("b"): never equal to b"..."
    if view[:len(PNG_SIGNATURE)] == PNG_SIGNATURE:
        pos = len(PNG_SIGNATURE)
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
        images.probe(bytes(data))
    except images.ImageDecodeError as exc:
        raise ExportError(f"image does not decode: {exc}") from exc


def turns(mode: schema.ModeSchema, contents: dict[str, str]) -> list[dict]:
    """The conversation's structure, given each segment column's content (text, or base64 for an
    image): user segments are user turns, consecutive assistant segments merge into one turn."""
    out: list[dict] = []
    for seg in mode.sequence:
        if mode.column(seg.column).is_image:
            if seg.turn != "assistant":
                raise ExportError(f"{mode.mode}: image {seg.column} is in a user turn; the format has user text only")
            part = {"type": "image", "content": contents[seg.column],
                    "need_loss": seg.loss, "need_vae": seg.vae, "need_vit": seg.vit}
        elif seg.turn == "user":
            out.append({"role": "user", "content": contents[seg.column], "need_loss": seg.loss})
            continue
        else:
            part = {"type": "text", "content": contents[seg.column], "need_loss": seg.loss}
        if out and out[-1]["role"] == "assistant":
            out[-1]["content"].append(part)
        else:
            out.append({"role": "assistant", "content": [part]})
    return out


def checked_content(mode: schema.ModeSchema, column: str, value: Any, sample_id: str, is_image: bool) -> str | bytes:
    """A segment's value as the format holds it, or `ExportError`: the official reader silently drops
    a row whose part is empty or whose image does not decode, so neither may reach it."""
    where = f"{mode.mode}/{sample_id}: column {column}"
    if value is None:
        raise ExportError(f"{where} is null")
    if is_image:
        data = value.get("bytes") if isinstance(value, dict) else value
        if not data:
            raise ExportError(f"{where} has no image bytes")
        try:
            check_image(data)
        except ExportError as exc:
            raise ExportError(f"{where}: {exc}") from None
        return data
    if not value:
        raise ExportError(f"{where} is empty (the official reader drops an empty part)")
    return value


def conversation(mode: schema.ModeSchema, row: dict[str, Any]) -> list[dict]:
    """One shard row as the official format's conversation (the plain, slow definition)."""
    contents = {}
    for column in dict.fromkeys(seg.column for seg in mode.sequence):
        is_image = mode.column(column).is_image
        value = checked_content(mode, column, row[column], row["sample_id"], is_image)
        contents[column] = base64.b64encode(value).decode("ascii") if is_image else value
    return turns(mode, contents)


class ConversationJson:
    """`json.dumps(conversation(mode, row), ensure_ascii=False)`, character for character, but fast.

    A mode's conversations differ only in their contents, so the dump of its structure is made once,
    with a marker in each content, and cut at the markers. A row is then the fixed pieces with each
    content put between them: a text as `json.dumps` writes a string, an image as its base64 in
    quotes (base64 has nothing to escape, so scanning those bytes is skipped).
    """

    def __init__(self, mode: schema.ModeSchema):
        self.mode = mode
        self.columns = list(dict.fromkeys(seg.column for seg in mode.sequence))
        marks = {c: f"\x00{i}\x00" for i, c in enumerate(self.columns)}
        dump = json.dumps(turns(mode, marks), ensure_ascii=False)
        # The columns in the order the dump holds their contents, and the text between them.
        found = sorted((dump.index(json.dumps(m)), c) for c, m in marks.items())
        self.holes = [c for _, c in found]
        self.pieces, at = [], 0
        for pos, column in found:
            self.pieces.append(dump[at:pos])
            at = pos + len(json.dumps(marks[column]))
        self.pieces.append(dump[at:])
        self.pieces = [piece.encode("utf-8") for piece in self.pieces]
        self.images = {c: mode.column(c).is_image for c in self.columns}
        if len(self.holes) != len(mode.sequence):  # a column in two segments: a marker per hole needed
            raise ExportError(f"{mode.mode}: a column appears in more than one segment")

    def rows(self, table: pa.Table) -> list[bytes]:
        """Every row of `table` (with `sample_id` and the segment columns) as its conversation JSON,
        UTF-8 encoded. Image bytes are read in place from Arrow's buffers, not copied out."""
        sample_ids = table.column("sample_id").to_pylist()
        values = {c: (_blobs(table.column(c)) if self.images[c] else table.column(c).to_pylist()) for c in self.columns}
        encode = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses for a str
        out = []
        for i, sample_id in enumerate(sample_ids):
            text = [self.pieces[0]]
            for column, piece in zip(self.holes, self.pieces[1:]):
                is_image = self.images[column]
                value = checked_content(self.mode, column, values[column][i], sample_id, is_image)
                if is_image:
                    text += [b'"', base64.b64encode(value), b'"', piece]
                else:
                    text += [encode(value).encode("utf-8"), piece]
            out.append(b"".join(text))
        return out


def _blobs(column: pa.ChunkedArray) -> list[memoryview | None]:
    """An image column's file bytes, row by row, as views of the Arrow buffer (None for a null image)."""
    images = column.combine_chunks()
    data = images.field("bytes")  # the child, already cut to the struct's offset and length
    if not (pa.types.is_binary(data.type) or pa.types.is_large_binary(data.type)):
        raise ExportError(f"image bytes are stored as {data.type}, not binary")
    _, offsets, buffer = data.buffers()[:3]
    width = np.int64 if pa.types.is_large_binary(data.type) else np.int32
    ends = np.frombuffer(offsets, dtype=width)[data.offset:data.offset + len(data) + 1].tolist()
    view = memoryview(buffer) if buffer is not None else memoryview(b"")
    valid = [True] * len(images) if images.null_count == 0 and data.null_count == 0 else [
        a and b for a, b in zip(images.is_valid().to_pylist(), data.is_valid().to_pylist())]
    return [view[ends[i]:ends[i + 1]] if valid[i] else None for i in range(len(images))]


def string_array(texts: list[bytes]) -> pa.Array:
    """UTF-8 byte strings as an Arrow string array, built from their buffers (no per-item conversion)."""
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ExportError(f"one row group of {len(texts)} conversations holds {offsets[-1]:,} bytes, over a "
                          "string column's 2 GiB: lower row_group_rows")
    return pa.StringArray.from_buffers(len(texts), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(texts)))


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
    compression: str = "zstd"


def plan_mode(data: Path, mode_key: str, staging: Path, rows_per_file: int, row_group_rows: int,
              compression: str = "zstd") -> list[FileTask]:
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
                tasks.append(FileTask(mode_key, len(tasks), tuple(pieces), str(staging), row_group_rows, compression))
                pieces, room = [], rows_per_file
    if pieces:
        tasks.append(FileTask(mode_key, len(tasks), tuple(pieces), str(staging), row_group_rows, compression))
    return tasks


def part_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def conversation_table(texts: list[bytes]) -> pa.Table:
    return pa.Table.from_arrays([string_array(texts)], schema=CONVERSATION)


def export_file(task: FileTask) -> str:
    """Write one output file, holding a few row groups in memory at a time.

    Where the process has more than one core, three things overlap: the next source row group is
    read (decompressed) on one thread and the last output row group compressed and written on
    another — both release the GIL — while this thread builds the JSON. On one core the threads
    would only take turns, so everything runs here. The file is the same either way.
    """
    mode = schema.load(task.mode)
    columns = ["sample_id", *dict.fromkeys(seg.column for seg in mode.sequence)]
    to_json = ConversationJson(mode)
    path = Path(task.staging) / part_name(task.number)
    readers: dict[str, pq.ParquetFile] = {}  # a file's footer is parsed once, not once per row group

    def read(piece: Piece) -> pa.Table:
        reader = readers.get(piece.path) or readers.setdefault(piece.path, pq.ParquetFile(piece.path))
        return reader.read_row_group(piece.group, columns=columns).slice(piece.start, piece.rows)

    threads = usable_cpus() > 1
    group: list[bytes] = []
    write_behind = emit.WriteBehind(depth=2) if threads else None
    # Each value is a whole conversation, unique and large: a dictionary or min/max statistics of
    # them cost time and help no reader.
    with pq.ParquetWriter(path, CONVERSATION, compression=task.compression, use_dictionary=False,
                          write_statistics=False) as writer:
        def write(texts: list[bytes]) -> None:
            if write_behind is None:
                writer.write_table(conversation_table(texts))
            else:
                write_behind.submit(writer.write_table, conversation_table(texts))

        try:
            for table in (read_ahead(read, task.pieces) if threads else map(read, task.pieces)):
                for text in to_json.rows(table):
                    group.append(text)
                    if len(group) == task.row_group_rows:
                        write(group)
                        group = []
            if group:
                write(group)
        finally:
            if write_behind is not None:
                write_behind.close()  # every write done (or its error raised) before the file closes
    return str(path)


def read_ahead(read, pieces: tuple[Piece, ...]):
    """`map(read, pieces)`, with the next piece read on a thread of its own while this one is used."""
    if not pieces:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-read") as pool:
        upcoming = pool.submit(read, pieces[0])
        for k in range(len(pieces)):
            table = upcoming.result()
            if k + 1 < len(pieces):
                upcoming = pool.submit(read, pieces[k + 1])
            yield table


# ----------------------------------------------------------------------------- the whole export


def file_info(path: Path) -> dict:
    meta = pq.ParquetFile(path).metadata
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    return {"num_row_groups": meta.num_row_groups, "num_rows": meta.num_rows, "row_group_rows": groups}


def export_irg(data: Path, out: Path, *, row_group_rows: int, rows_per_file: int,
               processes: int | None = None, compression: str = "zstd") -> dict[str, dict[str, dict]]:
    """Export every mode; returns `{mode: parquet info}` (what `parquet_info/<mode>.json` holds)."""
    data, out = Path(data), Path(out)
    modes = [m for m in schema.MODE_KEYS if (data / "data" / m).is_dir()]
    if not modes:
        raise ExportError(f"{data}: no mode folders under data/ (expected data/<mode_key>/*.parquet)")
    if row_group_rows < 1 or rows_per_file < 1:
        raise ExportError("row_group_rows and rows_per_file must be positive")
    if compression not in COMPRESSIONS:
        raise ExportError(f"compression={compression}: one of {', '.join(COMPRESSIONS)}")
    (out / "parquet_info").mkdir(parents=True, exist_ok=True)
    stagings = {m: out / f".staging-{m}" for m in modes}
    tasks: list[FileTask] = []
    for mode_key, staging in stagings.items():
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed export
        staging.mkdir(parents=True)
        tasks += plan_mode(data, mode_key, staging, rows_per_file, row_group_rows, compression)
    if not processes:  # auto: one per CPU, unless starting them costs more than the work
        size = sum(path.stat().st_size for m in modes for path in (data / "data" / m).glob("*.parquet"))
        processes = usable_cpus() if size >= PARALLEL_BYTES else 1
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
