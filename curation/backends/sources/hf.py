"""`source=hf`: a Hugging Face dataset, from the Hub or from local files, read with `datasets`.

`source.path` is a Hub id (`org/name`), a local folder of data files, a folder written by
`save_to_disk`, or one data file (.parquet, .jsonl, .json, .csv, .arrow, a webdataset .tar, a
zipped imagefolder .zip). The prompt comes from `source.prompt_column`; the image from
`source.image_column` (an `Image` feature or raw bytes), or `image_column: null` for prompts
only; the sample id from `source.id_column` (default: the row's position). `streaming: true`
reads a large dataset row by row without downloading it first.

Images are read undecoded (`Image(decode=False)`), so the gates see the bytes exactly as the
dataset stores them and decide about them in one place. An `Image` value that is a file
reference rather than bytes is read here: a local path, or, for a streamed Hub imagefolder, the
remote URL `datasets` gives it (`hf://datasets/…`, `zip://a.png::hf://…`, `zip://…::https://…`),
opened through fsspec as `datasets` itself would. Rows are read as Arrow batches and decoded
here (`rows.py`), so a row whose bytes do not decode is one reject, not the end of the run.
Column names and types are checked at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import datasets
import fsspec
import pyarrow as pa

from curation.backends.base import BackendUnavailable, Source, SourceItem
from curation.backends.sources.folder import image_from_value
from curation.backends.sources.rows import RowIds, decode_rows
from curation.core.config import redact_text
from curation.core.reasons import IMAGE_MISSING, ROW_UNREADABLE, STAGE
from curation.core.records import Reject

DATA_FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".arrow": "arrow",
                      ".tar": "webdataset", ".zip": "imagefolder"}
TEXT_DTYPES = ("string", "large_string")
BYTES_DTYPES = ("binary", "large_binary")
ID_DTYPES = TEXT_DTYPES + ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
BATCH_ROWS = 256  # rows decoded per Arrow batch


def is_url(path: str) -> bool:
    """A file reference `datasets` gives as an fsspec URL (`hf://…`, `zip://…::…`, `file://…`), not a path."""
    return "://" in path


def read_image_url(url: str) -> bytes | Reject:
    """The bytes behind an fsspec URL; a file that is gone is `image_missing`, a failed read transient."""
    try:
        with fsspec.open(url, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return Reject(STAGE, IMAGE_MISSING, f"{redact_text(url)} does not exist")
    except (ValueError, ImportError) as exc:  # a protocol fsspec does not know, or whose package is missing
        return Reject(STAGE, ROW_UNREADABLE, f"{redact_text(url)} cannot be opened: {type(exc).__name__}: "
                                             f"{redact_text(str(exc))}")
    except OSError as exc:  # network and server errors: the next run tries again
        return Reject(STAGE, ROW_UNREADABLE, f"{redact_text(url)}: {type(exc).__name__}: {redact_text(str(exc))}",
                      transient=True)


class HFSource(Source):
    def __init__(self, path: str | None, split: str = "train", prompt_column: str = "prompt",
                 image_column: str | None = "image", id_column: str | None = None, name: str | None = None,
                 revision: str | None = None, streaming: bool = False, cache_dir: str | None = None,
                 concurrency: int = 1):
        if not path:
            raise BackendUnavailable("source=hf needs source.path=<Hub id or local dataset path>")
        self.path = str(path)
        self.split = split
        self.prompt_column = prompt_column
        self.image_column = image_column
        self.id_column = id_column
        self.name = name
        self.revision = revision
        self.streaming = bool(streaming)
        self.cache_dir = cache_dir
        self.provides_images = image_column is not None
        self.concurrency = concurrency
        self._local = Path(self.path).exists()
        self._dataset: datasets.Dataset | datasets.IterableDataset | None = None

    def identity(self) -> dict:
        # `streaming` and `cache_dir` change how rows are read, not which rows: not part of it.
        settings = {"split": self.split, "prompt_column": self.prompt_column, "image_column": self.image_column}
        if self.id_column is not None:  # without it the identity (so every sample id) stays as before
            settings["id_column"] = self.id_column
        # A URL's credentials are not part of it (they change; the data does not), and never reach lineage.
        return {"id": f"hf:{redact_text(self.path)}" + (f":{self.name}" if self.name else ""),
                "revision": self.revision or ("local" if self._local else "unpinned"), "settings": settings}

    # ------------------------------------------------------------------ start-up

    def check(self) -> None:
        dataset = self._load()
        columns = self._columns(dataset)
        for knob, column in (("prompt_column", self.prompt_column), ("image_column", self.image_column),
                             ("id_column", self.id_column)):
            if column is not None and column not in columns:
                raise BackendUnavailable(f"source.{knob}={column!r} is not a column of {self.path} "
                                         f"(split {self.split}); its columns are {sorted(columns)}")
        features = dataset.features
        if features is None:  # a streamed dataset without metadata: types show up row by row
            self._dataset = dataset
            return
        if self.id_column is not None:
            id_type = features[self.id_column]
            if not (isinstance(id_type, datasets.Value) and id_type.dtype in ID_DTYPES):
                raise BackendUnavailable(f"source.id_column={self.id_column!r} holds {id_type}, not text or "
                                         "integers: choose the column with the ids, or null for positions")
        prompt_type = features[self.prompt_column]
        if not (isinstance(prompt_type, datasets.Value) and prompt_type.dtype in TEXT_DTYPES):
            raise BackendUnavailable(f"source.prompt_column={self.prompt_column!r} holds {prompt_type}, not text: "
                                     "choose the column with the prompts")
        if self.image_column is not None:
            image_type = features[self.image_column]
            if isinstance(image_type, datasets.Image):
                dataset = dataset.cast_column(self.image_column, datasets.Image(decode=False))
            elif not (isinstance(image_type, datasets.Value) and image_type.dtype in BYTES_DTYPES):
                raise BackendUnavailable(f"source.image_column={self.image_column!r} holds {image_type}, not images: "
                                         "choose a column of images (an Image feature or bytes), or set "
                                         "source.image_column=null for prompts only")
        self._dataset = dataset

    def _load(self) -> datasets.Dataset | datasets.IterableDataset:
        path = Path(self.path)
        try:
            if path.is_dir() and (path / "dataset_info.json").is_file() and (path / "state.json").is_file():
                dataset = datasets.load_from_disk(str(path))
                if self.streaming:
                    dataset = dataset.to_iterable_dataset()
            elif path.is_file():
                builder = DATA_FILE_BUILDERS.get(path.suffix.lower())
                if builder is None:
                    raise BackendUnavailable(f"source.path={self.path} is a {path.suffix or 'suffix-less'} file; "
                                             f"give one of {sorted(DATA_FILE_BUILDERS)}, a folder or a Hub id")
                dataset = datasets.load_dataset(builder, data_files={self.split: str(path)}, split=self.split,
                                                streaming=self.streaming, cache_dir=self.cache_dir)
            else:
                dataset = datasets.load_dataset(self.path, self.name, split=self.split, revision=self.revision,
                                                streaming=self.streaming, cache_dir=self.cache_dir)
        except BackendUnavailable:
            raise
        except Exception as exc:  # datasets raises many types: missing repo, no network, bad split …
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise BackendUnavailable(f"source=hf could not load {redact_text(self.path)!r} split {self.split!r}: "
                                     f"{type(exc).__name__}: {first_line}") from exc
        if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            if self.split not in dataset:
                raise BackendUnavailable(f"source.split={self.split!r} is not a split of {self.path}; "
                                         f"its splits are {sorted(dataset)}")
            dataset = dataset[self.split]
        return dataset

    @staticmethod
    def _columns(dataset) -> set[str]:
        if dataset.features is not None:
            return set(dataset.features)
        # A streamed dataset without metadata: the first batch's schema names them (read as Arrow,
        # so a value that does not decode cannot stop the start-up).
        first = next(dataset.with_format("arrow").iter(batch_size=1), None)
        return set(first.column_names) if first is not None else set()

    # ------------------------------------------------------------------ rows

    def iter_items(self, limit: int) -> Iterator[SourceItem]:
        if self._dataset is None:
            self.check()
        dataset = self._dataset
        if isinstance(dataset, datasets.Dataset):
            dataset = dataset.select(range(min(limit, len(dataset))))
        # Only the columns used are decoded: bad bytes in a column nobody reads reject nothing.
        columns = list(dict.fromkeys(c for c in (self.prompt_column, self.image_column, self.id_column) if c))
        batches = dataset.select_columns(columns).with_format("arrow").iter(batch_size=BATCH_ROWS)
        base = Path(self.path) if self._local and Path(self.path).is_dir() else None
        ids = RowIds(self.id_column)
        start = 0
        while start < limit:
            try:
                batch = next(batches, None)
            except (OSError, pa.ArrowException) as exc:  # a data file that cannot be read at all
                raise BackendUnavailable(f"source=hf could not read {self.path!r} past row {start}: "
                                         f"{type(exc).__name__}: {exc}") from exc
            if batch is None:
                return
            for offset, row in enumerate(decode_rows(batch, start)):
                if start + offset >= limit:
                    return
                yield self._item(start + offset, row, base, ids)
            start += batch.num_rows

    def _item(self, index: int, row: dict[str, Any] | Reject, base: Path | None, ids: RowIds) -> SourceItem:
        positional = f"{self.split}:{index}"
        meta = {"row": index}
        if isinstance(row, Reject):
            return SourceItem(positional, None, meta=meta, problem=row)
        source_id, problem = ids.assign(row, positional, index)
        prompt = row.get(self.prompt_column)
        if problem is not None:
            return SourceItem(source_id, prompt, meta=meta, problem=problem)
        if self.image_column is None:
            return SourceItem(source_id, prompt, meta=meta)
        data = self._image(row.get(self.image_column), base)
        if isinstance(data, bytes):
            return SourceItem(source_id, prompt, image=data, meta=meta)
        return SourceItem(source_id, prompt, meta=meta, problem=data)

    @staticmethod
    def _image(value: Any, base: Path | None) -> bytes | Reject:
        """Bytes from an image cell: its bytes, or the file it references (a local path or a URL)."""
        if isinstance(value, dict) and not value.get("bytes") and isinstance(value.get("path"), str) \
                and is_url(value["path"]):
            return read_image_url(value["path"])
        return image_from_value(value, base)
