"""Emit: the only code that knows the modes' columns. Outcomes in, shards out.

One pass over the run's outcomes in sample-id order: each outcome becomes, for every mode that
takes its sample, a row of the mode's schema or a reject with its reason, and goes straight to
that mode's shard writer (`writer/dataset.py` holds the writers). Rows are validated, shards use
fixed writer settings and hold no wall-clock values: the output is a pure function of the
outcomes, which is what makes resumed, sharded-then-merged and uninterrupted runs byte-identical.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from curation import __version__
from curation.core import schema
from curation.core.images import ImageRef
from curation.core.paths import templates_dir
from curation.core.records import Outcome, Reject

VALIDATE = "validate"
PARQUET_SETTINGS = {"compression": "zstd", "compression_level": 3, "write_statistics": True}


def load_questions() -> dict[str, Any]:
    return yaml.safe_load((templates_dir() / "questions.yaml").read_text())


# ----------------------------------------------------------------------------- rows


class LineageWriter:
    """A row's `lineage` column: JSON with sorted keys, made from one sample's outcome.

    Equal to `json.dumps(as_dict(...), sort_keys=True, ensure_ascii=False)` (a test checks it),
    but assembled from parts serialised once: the run's constants once per emit, each stage's
    part once per sample, shared by every mode that lists the stage (emit is a hot loop: six
    modes per sample for `recipe=all`). The top-level keys, in sorted order, are: mode,
    pipeline_version, sample_id, schema_version, source, source_id, stages, templates.
    """

    def __init__(self, identities: dict[str, Any], role_of: dict[str, str | None], template_versions: dict[str, Any]):
        self.identities = identities
        self.role_of = role_of
        self._template_versions = template_versions
        self._pipeline = f'"pipeline_version": {_json(__version__)}, '
        self._schema = f'"schema_version": {_json(schema.schema_version())}, '
        self._templates = f'"templates": {_json(template_versions)}}}'

    def for_sample(self, outcome: Outcome, stage_names: Iterable[str]) -> "_SampleLineage":
        parts = {name: f"{_json(name)}: " + _json({"backend": self.identities.get(self.role_of[name]),
                                                   **outcome.lineage.get(name, {})})
                 for name in stage_names}
        middle = (f'"sample_id": {_json(outcome.sample_id)}, {self._schema}'
                  f'"source": {_json(outcome.lineage.get("source", {}))}, "source_id": {_json(outcome.source_id)}, ')
        return _SampleLineage(self, parts, middle)

    def as_dict(self, outcome: Outcome, mode: str, stage_names: tuple[str, ...]) -> dict[str, Any]:
        """The lineage as a plain dict (what the JSON says)."""
        return {"sample_id": outcome.sample_id, "source_id": outcome.source_id, "mode": mode,
                "pipeline_version": __version__, "schema_version": schema.schema_version(),
                "templates": self._template_versions, "source": outcome.lineage.get("source", {}),
                "stages": {name: {"backend": self.identities.get(self.role_of[name]), **outcome.lineage.get(name, {})}
                           for name in stage_names}}


@dataclass(frozen=True)
class _SampleLineage:
    writer: LineageWriter
    parts: dict[str, str]
    middle: str

    def json(self, mode: str, stage_names: tuple[str, ...]) -> str:
        stages = ", ".join(self.parts[n] for n in sorted(stage_names))
        return (f'{{"mode": {_json(mode)}, {self.writer._pipeline}{self.middle}"stages": {{{stages}}}, '
                f'{self.writer._templates}')


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class _ColumnPlan:
    name: str
    is_image: bool
    required: bool
    source: str
    constant: str | None  # a question template's text


def column_plans(mode_schema: schema.ModeSchema, questions: dict[str, Any]) -> tuple[_ColumnPlan, ...]:
    return tuple(_ColumnPlan(c.name, c.is_image, c.required, c.source,
                             questions[c.template] if c.template else None) for c in mode_schema.columns)


def build_row(columns: tuple[_ColumnPlan, ...], values: dict[str, Any],
              image_bytes: Callable[[ImageRef], bytes]) -> tuple[dict[str, Any], int] | tuple[str, str]:
    """A row of the mode and its size in bytes, or `(reason, detail)` when the values cannot make a
    valid one. `values` maps pipeline fields (and sample_id, source_id, lineage) to values."""
    row: dict[str, Any] = {}
    size = 0
    for col in columns:
        value = col.constant if col.constant is not None else values.get(col.source)
        if value is None:
            if col.required:
                return "missing_required_column", f"{col.name} (from {col.source}) has no value"
            row[col.name] = None
            continue
        if col.is_image:
            if not isinstance(value, ImageRef):
                return "bad_column_type", f"{col.name} should be an image, got {type(value).__name__}"
            data = image_bytes(value)
            row[col.name] = {"bytes": data, "path": value.filename}
            size += len(data)
        else:
            if not isinstance(value, str):
                return "bad_column_type", f"{col.name} should be text, got {type(value).__name__}"
            try:
                size += len(value.encode("utf-8"))
            except UnicodeEncodeError as exc:
                return "invalid_text", f"{col.name}: {exc}"
            row[col.name] = value
    return row, size


def row_nbytes(row: dict[str, Any]) -> int:
    size = 0
    for value in row.values():
        if isinstance(value, dict):
            size += len(value["bytes"])
        elif isinstance(value, str):
            size += len(value.encode("utf-8"))
    return size


# ----------------------------------------------------------------------------- shards


class WriteBehind:
    """Parquet writes on one thread of their own, in the order they were asked for, at most `depth`
    waiting: compressing and writing a row group releases the GIL, so the next rows are built
    meanwhile. The files are the same as with direct writes (same tables, same order per file)."""

    def __init__(self, depth: int = 4):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-write")
        self._room = threading.Semaphore(depth)
        self._pending: deque[Future] = deque()

    def submit(self, fn: Callable, *args, **kwargs) -> None:
        self._room.acquire()
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(lambda _: self._room.release())
        self._pending.append(future)
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()  # a failed write surfaces at the next one

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)


class ShardWriter:
    """Rows (already in sample-id order) → `train-XXXXX-of-YYYYY.parquet` under a folder.

    A shard closes when its rows pass `shard_bytes`; row groups hold `row_group_rows` rows so a
    streaming reader holds little in memory. Shard names carry the final count, so they are
    written under temporary names first and renamed when the count is known. With `write_behind`
    the row groups are written by its thread while the caller builds the next rows.
    """

    def __init__(self, folder: Path, arrow_schema: pa.Schema, *, shard_bytes: int, row_group_rows: int,
                 write_behind: WriteBehind | None = None):
        self._io = write_behind
        self.folder = folder
        self.schema = arrow_schema
        self.shard_bytes = shard_bytes
        self.row_group_rows = row_group_rows
        self._parts: list[tuple[Path, int]] = []
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[dict] = []
        self._shard_rows = 0
        self._shard_size = 0
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, row: dict[str, Any], nbytes: int | None = None) -> None:
        if self._writer is None:
            path = self.folder / f".part-{len(self._parts):05d}.parquet"
            self._writer = pq.ParquetWriter(path, self.schema, **PARQUET_SETTINGS)
            self._parts.append((path, 0))
        self._buffer.append(row)
        self._shard_rows += 1
        self._shard_size += row_nbytes(row) if nbytes is None else nbytes
        if len(self._buffer) >= self.row_group_rows:
            self._flush()
        if self._shard_size >= self.shard_bytes:
            self._close_shard()

    def _flush(self) -> None:
        if self._buffer:
            table = pa.Table.from_pylist(self._buffer, schema=self.schema)
            self._run(self._writer.write_table, table, row_group_size=self.row_group_rows)
            self._buffer = []

    def _run(self, fn: Callable, *args, **kwargs) -> None:
        if self._io is None:
            fn(*args, **kwargs)
        else:
            self._io.submit(fn, *args, **kwargs)

    def _close_shard(self) -> None:
        self._flush()
        self._run(self._writer.close)
        path, _ = self._parts[-1]
        self._parts[-1] = (path, self._shard_rows)
        self._writer, self._shard_rows, self._shard_size = None, 0, 0

    def close(self) -> list[dict]:
        if self._writer is not None:
            self._close_shard()
        if self._io is not None:
            self._io.drain()  # every write of these files done before they are renamed
        if not self._parts:  # an empty mode still gets one (empty) shard with the right schema
            path = self.folder / ".part-00000.parquet"
            pq.write_table(self.schema.empty_table(), path, **PARQUET_SETTINGS)
            self._parts.append((path, 0))
        total = len(self._parts)
        shards = []
        for i, (path, rows) in enumerate(self._parts):
            final = self.folder / f"train-{i:05d}-of-{total:05d}.parquet"
            os.replace(path, final)
            shards.append({"file": final.name, "rows": rows, "bytes": final.stat().st_size})
        return shards


def replace_dir(staged: Path, final: Path) -> None:
    """Swap a fully written folder into place; a reader never sees a half-written shard."""
    final.parent.mkdir(parents=True, exist_ok=True)
    trash = None
    if final.exists():
        trash = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, trash)
    os.replace(staged, final)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


REJECT_SCHEMA = pa.schema([("mode", pa.string()), ("sample_id", pa.string()), ("source_id", pa.string()),
                           ("stage", pa.string()), ("reason", pa.string()), ("detail", pa.string())])


class RejectsWriter:
    """The rejects table, streamed: rows arrive in sample-id order (then mode order), as emitted."""

    def __init__(self, path: Path, batch_rows: int = 4096):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.batch_rows = batch_rows
        self._writer = pq.ParquetWriter(path, REJECT_SCHEMA, **PARQUET_SETTINGS)
        self._buffer: list[dict] = []

    def write(self, row: dict[str, str]) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=REJECT_SCHEMA))
            self._buffer = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


# ----------------------------------------------------------------------------- the one pass


@dataclass
class EmitSettings:
    shard_size_mb: float = 256
    row_group_rows: int = 64


@dataclass(frozen=True)
class EmitPlan:
    """What emit needs to know of the run: which modes take which samples, from which stages."""

    modes: dict[str, int]  # mode -> samples with index below this count belong to it
    mode_stages: dict[str, tuple[str, ...]]
    role_of: dict[str, str | None]  # stage -> backend role
    identities: dict[str, Any]  # role -> backend identity


def emit_outcomes(outcomes: Iterable[Outcome], plan: EmitPlan, writer: "DatasetSink",
                  image_bytes: Callable[[ImageRef], bytes], duplicates: Mapping[str, Reject] | None = None) -> None:
    """Every outcome, read once, into every mode that takes its sample (rows or rejects).

    `duplicates` are the end-of-run dedup pass's gates rejects by sample id: they overrule
    whatever the sample's stages made (a duplicate is rejected in every mode)."""
    duplicates = duplicates or {}
    questions = load_questions()
    lineage = LineageWriter(plan.identities, plan.role_of, {"questions": questions["version"]})
    columns = {mode: column_plans(schema.load(mode), questions) for mode in plan.modes}
    all_stages = sorted({s for stages in plan.mode_stages.values() for s in stages})
    for outcome in outcomes:
        cache: dict[str, bytes] = {}

        def read_image(ref: ImageRef) -> bytes:  # an image shared by several modes is read once
            data = cache.get(ref.sha256)
            if data is None:
                data = cache[ref.sha256] = image_bytes(ref)
            return data

        sample_lineage = None
        values = {"sample_id": outcome.sample_id, "source_id": outcome.source_id, **outcome.fields}
        for mode, count in plan.modes.items():
            if outcome.index >= count:
                continue
            stages = plan.mode_stages[mode]
            failed = duplicates.get(outcome.sample_id) or outcome.first_reject(stages)
            if failed is not None:
                writer.reject(mode, outcome, failed.stage, failed.reason, failed.detail)
                continue
            if sample_lineage is None:
                sample_lineage = lineage.for_sample(outcome, all_stages)
            values["lineage"] = sample_lineage.json(mode, stages)
            row = build_row(columns[mode], values, read_image)
            if isinstance(row[0], str):
                writer.reject(mode, outcome, VALIDATE, *row)
            else:
                writer.accept(mode, *row)


class DatasetSink(Protocol):
    def accept(self, mode: str, row: dict[str, Any], nbytes: int | None = None) -> None: ...

    def reject(self, mode: str, outcome: Outcome, stage: str, reason: str, detail: str) -> None: ...
