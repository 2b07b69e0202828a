"""`source=hf`: a Hugging Face dataset, from the Hub or from local files, read with `datasets`.

`source.path` is a Hub id (`org/name`), a local folder of data files, a folder written by
`save_to_disk`, or one data file (.parquet, .jsonl, .json, .csv, .arrow). The prompt comes from
`source.prompt_column`; the image from `source.image_column` (an `Image` feature or raw bytes),
or `image_column: null` for prompts only. `streaming: true` reads a large dataset row by row
without downloading it first.

Images are read undecoded (`Image(decode=False)`), so the gates see the bytes exactly as the
dataset stores them and decide about them in one place. Column names are checked at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import datasets

from curation.backends.base import BackendUnavailable, Source, SourceItem
from curation.backends.sources.folder import image_from_value

DATA_FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".arrow": "arrow"}
TEXT_DTYPES = ("string", "large_string")
BYTES_DTYPES = ("binary", "large_binary")


class HFSource(Source):
    def __init__(self, path: str | None, split: str = "train", prompt_column: str = "prompt",
                 image_column: str | None = "image", name: str | None = None, revision: str | None = None,
                 streaming: bool = False, cache_dir: str | None = None, concurrency: int = 1):
        if not path:
            raise BackendUnavailable("source=hf needs source.path=<Hub id or local dataset path>")
        self.path = str(path)
        self.split = split
        self.prompt_column = prompt_column
        self.image_column = image_column
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
        return {"id": f"hf:{self.path}" + (f":{self.name}" if self.name else ""),
                "revision": self.revision or ("local" if self._local else "unpinned"),
                "settings": {"split": self.split, "prompt_column": self.prompt_column,
                             "image_column": self.image_column}}

    # ------------------------------------------------------------------ start-up

    def check(self) -> None:
        dataset = self._load()
        columns = self._columns(dataset)
        for knob, column in (("prompt_column", self.prompt_column), ("image_column", self.image_column)):
            if column is not None and column not in columns:
                raise BackendUnavailable(f"source.{knob}={column!r} is not a column of {self.path} "
                                         f"(split {self.split}); its columns are {sorted(columns)}")
        features = dataset.features
        if features is None:  # a streamed dataset without metadata: types show up row by row
            self._dataset = dataset
            return
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
            raise BackendUnavailable(f"source=hf could not load {self.path!r} split {self.split!r}: "
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
        first = next(iter(dataset), None)
        return set(first) if first is not None else set()

    # ------------------------------------------------------------------ rows

    def iter_items(self, limit: int) -> Iterator[SourceItem]:
        if self._dataset is None:
            self.check()
        dataset = self._dataset
        if isinstance(dataset, datasets.Dataset):
            dataset = dataset.select(range(min(limit, len(dataset))))
        base = Path(self.path) if self._local and Path(self.path).is_dir() else None
        for index, row in enumerate(dataset):
            if index >= limit:
                return
            yield self._item(index, row, base)

    def _item(self, index: int, row: dict[str, Any], base: Path | None) -> SourceItem:
        source_id = f"{self.split}:{index}"
        meta = {"row": index}
        prompt = row.get(self.prompt_column)
        if self.image_column is None:
            return SourceItem(source_id, prompt, meta=meta)
        data = image_from_value(row.get(self.image_column), base)
        if isinstance(data, bytes):
            return SourceItem(source_id, prompt, image=data, meta=meta)
        return SourceItem(source_id, prompt, meta=meta, problem=data)
