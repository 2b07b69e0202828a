"""`source=folder`: a local folder of images with captions, or one index file.

Two layouts:
- side-car captions (`source.index` unset): every image file (png, jpg, webp, …) under the
  folder, with its caption in a file of the same name ending `.txt` (the whole file is the
  prompt) or `.json` (an object whose `source.prompt_column` key is the prompt). Rows are in
  sorted path order; a caption without an image is a row too, rejected as `image_missing`.
- an index (`source.index=meta.jsonl|.csv|.parquet`, relative to the folder or absolute): one
  row per line, `source.prompt_column` the prompt and `source.image_column` the image as a
  path relative to the index (or, in Parquet, the image bytes). `image_column: null` makes a
  prompts-only source, whose high-quality images come from the reference generator.
  `source.id_column` names a column of sample ids (default: the row's position, `meta.jsonl:7`).

Rows this source cannot read (a bad JSON or CSV line, a Parquet value that does not decode, an
image file that is gone, an unusable id) come out with a `problem` the gates turn into a reject
with its reason and the row's position: nothing is dropped silently, and every other row is read.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from curation.backends.base import BackendUnavailable, Source, SourceItem
from curation.backends.sources.rows import RowIds, decode_rows
from curation.core.reasons import CAPTION_MISSING, IMAGE_MISSING, PROMPT_NOT_TEXT, ROW_UNREADABLE, STAGE
from curation.core.records import Reject

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CAPTION_SUFFIXES = (".json", ".txt")  # in order of preference when a stem has both
INDEX_FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PARQUET_BATCH_ROWS = 256


def image_from_value(value: Any, base_dir: Path | None) -> bytes | Reject:
    """Image bytes from an index or dataset cell: bytes, a path, or `{"bytes", "path"}`."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if value is None:
        return Reject(STAGE, IMAGE_MISSING, "the image cell is empty")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str):
        return Reject(STAGE, IMAGE_MISSING, f"the image cell holds {type(value).__name__}, not bytes or a path")
    path = Path(value)
    if not path.is_absolute():
        if base_dir is None:
            return Reject(STAGE, IMAGE_MISSING, f"relative image path {value!r} with no local folder to resolve it")
        path = base_dir / path
    return read_image_file(path, value)


def read_image_file(path: Path, shown: str) -> bytes | Reject:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return Reject(STAGE, IMAGE_MISSING, f"{shown} does not exist")
    except OSError as exc:
        return Reject(STAGE, ROW_UNREADABLE, f"{shown}: {type(exc).__name__}: {exc.strerror}")


class FolderSource(Source):
    def __init__(self, path: str | None, index: str | None = None, prompt_column: str = "prompt",
                 image_column: str | None = "image", id_column: str | None = None, concurrency: int = 1):
        if not path:
            raise BackendUnavailable("source=folder needs source.path=<folder of images and captions>")
        self.path = Path(path)
        self.index = None if index is None else (Path(index) if Path(index).is_absolute() else self.path / index)
        self.prompt_column = prompt_column
        self.image_column = image_column
        self.id_column = id_column
        if id_column is not None and self.index is None:
            raise BackendUnavailable("source.id_column applies to an index file (source.index); side-car rows "
                                     "are named by their image's path already")
        # Side-car folders always hold images; an index may be prompts only.
        self.provides_images = self.index is None or image_column is not None
        self.concurrency = concurrency

    def identity(self) -> dict:
        settings: dict[str, Any] = {"prompt_column": self.prompt_column}
        if self.index is not None:
            settings.update(index=str(self.index), image_column=self.image_column)
            if self.id_column is not None:  # without it the identity (so every sample id) stays as before
                settings["id_column"] = self.id_column
        return {"id": f"folder:{self.path}", "revision": "local", "settings": settings}

    # ------------------------------------------------------------------ start-up

    def check(self) -> None:
        if not self.path.is_dir():
            raise BackendUnavailable(f"source.path={self.path} is not a folder: give the folder that holds the "
                                     "images (or the index file's folder)")
        if self.index is None:
            if not any(self._sidecar_files()):
                raise BackendUnavailable(f"source.path={self.path} holds no images or captions "
                                         f"({', '.join(IMAGE_SUFFIXES)} with .txt/.json side-cars): "
                                         "check the folder, or set source.index to an index file")
            return
        if not self.index.is_file():
            raise BackendUnavailable(f"source.index={self.index} does not exist: give a .jsonl, .csv or .parquet "
                                     "file, relative to source.path or absolute")
        if self.index.suffix.lower() not in INDEX_FORMATS:
            raise BackendUnavailable(f"source.index={self.index} is not a .jsonl, .csv or .parquet file")
        columns = self._index_columns()
        for knob, column in (("prompt_column", self.prompt_column), ("image_column", self.image_column),
                             ("id_column", self.id_column)):
            if column is not None and column not in columns:
                raise BackendUnavailable(f"source.{knob}={column!r} is not a column of {self.index.name}; "
                                         f"its columns are {sorted(columns)}")

    def _index_columns(self) -> set[str]:
        kind = INDEX_FORMATS[self.index.suffix.lower()]
        if kind == "parquet":
            return set(pq.read_schema(self.index).names)
        if kind == "csv":
            with self.index.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
                return set(next(csv.reader(fh), []))
        with self.index.open("rb") as fh:  # JSONL: the first row that parses names them
            for line in fh:
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(row, dict):
                    return set(row)
        return set()

    # ------------------------------------------------------------------ rows

    def iter_items(self, limit: int) -> Iterator[SourceItem]:
        rows = self._sidecar_items() if self.index is None else self._index_items()
        for n, item in enumerate(rows):
            if n >= limit:
                return
            yield item

    def _sidecar_files(self) -> Iterator[Path]:
        for root, dirs, files in os.walk(self.path):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(IMAGE_SUFFIXES + CAPTION_SUFFIXES) and not name.startswith("."):
                    yield Path(root, name)

    def _sidecar_items(self) -> Iterator[SourceItem]:
        files = list(self._sidecar_files())
        by_stem: dict[Path, dict[str, Path]] = {}
        for f in files:
            by_stem.setdefault(f.with_suffix(""), {})[f.suffix.lower()] = f
        for f in files:  # sorted path order; one row per image, one per caption without an image
            group = by_stem[f.with_suffix("")]
            has_image = any(s in group for s in IMAGE_SUFFIXES)
            if f.suffix.lower() in CAPTION_SUFFIXES:
                if not has_image and f == next(group[s] for s in CAPTION_SUFFIXES if s in group):
                    rel = str(f.relative_to(self.path))
                    yield SourceItem(source_id=rel, prompt=None, meta={"file": rel},
                                     problem=Reject(STAGE, IMAGE_MISSING, f"caption {rel} has no image beside it"))
                continue
            yield self._sidecar_item(f, group)

    def _sidecar_item(self, image_path: Path, group: dict[str, Path]) -> SourceItem:
        rel = str(image_path.relative_to(self.path))
        meta = {"file": rel}
        caption = next((group[s] for s in CAPTION_SUFFIXES if s in group), None)
        if caption is None:
            return SourceItem(rel, None, meta=meta,
                              problem=Reject(STAGE, CAPTION_MISSING, f"no .txt or .json caption beside {rel}"))
        prompt = self._read_caption(caption)
        if isinstance(prompt, Reject):
            return SourceItem(rel, None, meta=meta, problem=prompt)
        data = read_image_file(image_path, rel)
        if isinstance(data, Reject):
            return SourceItem(rel, prompt, meta=meta, problem=data)
        return SourceItem(rel, prompt, image=data, meta=meta)

    def _read_caption(self, path: Path) -> Any:
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return Reject(STAGE, PROMPT_NOT_TEXT, f"{path.name} is not UTF-8 (byte {exc.start})")
        except OSError as exc:
            return Reject(STAGE, ROW_UNREADABLE, f"{path.name}: {type(exc).__name__}: {exc.strerror}")
        if path.suffix.lower() == ".txt":
            return text.rstrip("\r\n")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            return Reject(STAGE, ROW_UNREADABLE, f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno})")
        if not isinstance(obj, dict):
            return Reject(STAGE, ROW_UNREADABLE, f"{path.name} holds a JSON {type(obj).__name__}, not an object")
        return obj.get(self.prompt_column)

    def _index_items(self) -> Iterator[SourceItem]:
        base = self.index.parent
        ids = RowIds(self.id_column)
        for n, row in enumerate(self._index_rows()):
            positional = f"{self.index.name}:{n}"
            meta = {"row": n}
            if isinstance(row, Reject):
                yield SourceItem(positional, None, meta=meta, problem=row)
                continue
            source_id, problem = ids.assign(row, positional, n)
            prompt = row.get(self.prompt_column)
            if problem is not None:
                yield SourceItem(source_id, prompt, meta=meta, problem=problem)
                continue
            if self.image_column is None:
                yield SourceItem(source_id, prompt, meta=meta)
                continue
            data = image_from_value(row.get(self.image_column), base)
            if isinstance(data, Reject):
                yield SourceItem(source_id, prompt, meta=meta, problem=data)
            else:
                yield SourceItem(source_id, prompt, image=data, meta=meta)

    def _index_rows(self) -> Iterator[dict | Reject]:
        """Rows in file order; a row that cannot be read is a Reject, and the rows after it are still read."""
        kind = INDEX_FORMATS[self.index.suffix.lower()]
        if kind == "parquet":
            yield from self._parquet_rows()
        elif kind == "csv":
            yield from self._csv_rows()
        else:
            with self.index.open("rb") as fh:
                for line_no, raw in enumerate(fh, start=1):
                    if raw.strip():  # blank lines are not rows
                        yield self._json_row(raw, line_no)

    def _parquet_rows(self) -> Iterator[dict | Reject]:
        # Only the columns used are decoded: bad bytes in a column nobody reads reject nothing.
        columns = list(dict.fromkeys(c for c in (self.prompt_column, self.image_column, self.id_column) if c))
        start = 0
        for batch in pq.ParquetFile(self.index).iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
            yield from decode_rows(pa.Table.from_batches([batch]), start)
            start += batch.num_rows

    def _csv_rows(self) -> Iterator[dict | Reject]:
        # Bytes that are not UTF-8 survive as lone surrogates, which the gates reject as
        # `prompt_not_text` for that row instead of the whole file failing to read.
        with self.index.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
            reader = csv.DictReader(fh)
            n = 0
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:  # e.g. a field over csv.field_size_limit(): this row only
                    row = Reject(STAGE, ROW_UNREADABLE, f"row {n} is not valid CSV ({exc})")
                n += 1
                yield row

    def _json_row(self, raw: bytes, line_no: int) -> dict | Reject:
        try:
            row = json.loads(raw)
        except UnicodeDecodeError as exc:
            return Reject(STAGE, PROMPT_NOT_TEXT, f"line {line_no} is not UTF-8 (byte {exc.start})")
        except json.JSONDecodeError as exc:
            return Reject(STAGE, ROW_UNREADABLE, f"line {line_no} is not valid JSON ({exc.msg})")
        if not isinstance(row, dict):
            return Reject(STAGE, ROW_UNREADABLE, f"line {line_no} holds a JSON {type(row).__name__}, not an object")
        return row
