"""A store many machines share: results, outcomes and images as files under one fsspec URL.

The SQLite `Store` is the default for one machine; SQLite's locks are not safe on NFS/Lustre and
do not exist on object stores, so a cluster shares this one instead. It has the same methods,
so the executor, the Ray workers and emit use either.

Layout under the root URL (a local path, `file://`, NFS/Lustre mount, `s3://`, `gs://`, `memory://`):

    results/<key[:2]>/<key>.json                      one stage result by its stage key
    outcomes/<plan_key>/<id[:2]>/<sample_id>.json      one sample's outcome under a plan
    images/<sha[:2]>/<sha>.<fmt>                       image bytes by their sha256

Every value is content-addressed or keyed by what determines it, so two writers of one key
write the same bytes, and the last write wins harmlessly. A reader never sees a partial value:
on a filesystem every write goes to a temporary name in the target folder and is renamed into
place (rename is atomic within a folder on POSIX filesystems, NFS and Lustre included); on an
object store a value is one PUT, which stores are atomic about (a GET returns the old object,
the new one, or nothing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from curation.pipeline.store import Store
from curation.core import images
from curation.core.config import ConfigError
from curation.core.images import ImageRef
from curation.core.files import write_atomic
from curation.core.records import Outcome, Reject, StageOutput, result_from_json

STORE_KINDS = ("sqlite", "shared")


class SharedStore:
    def __init__(self, url: str | os.PathLike):
        self.url = str(url)
        self.fs, root = fsspec.core.url_to_fs(self.url)
        self.root = root.rstrip("/")
        # Local paths (NFS and Lustre mounts included) get temp name + rename; others one put.
        self._local = isinstance(self.fs, LocalFileSystem)
        self.fs.makedirs(self.root, exist_ok=True)

    def close(self) -> None:
        """Nothing is held open between calls: every value is its own file or object."""

    # ------------------------------------------------------------------ stage results

    def _result_path(self, key: str) -> str:
        return f"{self.root}/results/{key[:2]}/{key}.json"

    def get_result(self, key: str) -> StageOutput | Reject | None:
        data = self._read(self._result_path(key))
        return None if data is None else result_from_json(json.loads(data)["value"])

    def put_result(self, key: str, stage: str, result: StageOutput | Reject) -> None:
        value = {"stage": stage, "value": result.to_json()}
        self._write(self._result_path(key), _json_bytes(value))

    # ------------------------------------------------------------------ per-run outcomes

    def _outcome_dir(self, run_key: str) -> str:
        return f"{self.root}/outcomes/{run_key}"

    def _outcome_path(self, run_key: str, sample_id: str) -> str:
        return f"{self._outcome_dir(run_key)}/{sample_id[:2]}/{sample_id}.json"

    def put_outcome(self, run_key: str, outcome: Outcome) -> None:
        self._write(self._outcome_path(run_key, outcome.sample_id), _json_bytes(outcome.to_json()))

    def clear_outcomes(self, run_key: str) -> None:
        """Forget a run's outcomes: a run walks every sample again (reading results from the store),
        so afterwards the folder holds exactly the samples of this run, whatever an earlier one saw."""
        top = self._outcome_dir(run_key)
        if self.fs.exists(top):
            self.fs.rm(top, recursive=True)

    def count_outcomes(self, run_key: str) -> int:
        return sum(1 for _ in self._outcome_paths(run_key))

    def iter_outcomes(self, run_key: str) -> Iterator[Outcome]:
        """A run's outcomes in sample-id order (the order of every shard), one read of each."""
        for path in self._outcome_paths(run_key):
            data = self._read(path)
            if data is not None:  # listed, then removed by another process: the listing is not the truth
                yield Outcome.from_json(json.loads(data))

    def iter_dedup_keys(self, run_key: str) -> Iterator[tuple[tuple, str | None]]:
        """Each outcome's dedup keys (when it has them) and its `hq_image_embedding` (or None)."""
        for outcome in self.iter_outcomes(run_key):
            if outcome.dedup is not None:
                yield outcome.dedup, outcome.fields.get("hq_image_embedding")

    def _outcome_paths(self, run_key: str) -> Iterator[str]:
        """Bucket folders are named by the first two characters of the ids inside them, so sorted
        buckets of sorted names are sorted ids, and only one bucket's listing is held at a time."""
        top = self._outcome_dir(run_key)
        if not self.fs.exists(top):
            return
        for bucket in sorted(self._names(top)):
            for name in sorted(n for n in self._names(f"{top}/{bucket}") if n.endswith(".json")):
                yield f"{top}/{bucket}/{name}"

    # ------------------------------------------------------------------ images

    def _image_path(self, sha: str, fmt: str) -> str:
        return f"{self.root}/images/{sha[:2]}/{sha}.{fmt}"

    def put_image_bytes(self, data: bytes, ref: ImageRef | None = None) -> ImageRef:
        """Store encoded bytes as they are (probing them unless the caller already did)."""
        ref = ref or images.probe(data)
        path = self._image_path(ref.sha256, ref.format)
        if not self.fs.exists(path):
            self._write(path, data)
        return ref

    def image_bytes(self, ref: ImageRef) -> bytes:
        data = self._read(self._image_path(ref.sha256, ref.format))
        if data is None:
            raise FileNotFoundError(f"image {ref.sha256}.{ref.format} is not in the store at {self.url}")
        return data

    def has_image(self, ref: ImageRef) -> bool:
        return self.fs.exists(self._image_path(ref.sha256, ref.format))

    # ------------------------------------------------------------------ atomic I/O

    def _names(self, folder: str) -> list[str]:
        return [Path(p.rstrip("/")).name for p in self.fs.ls(folder, detail=False)
                if not Path(p.rstrip("/")).name.startswith(".tmp-")]

    def _read(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def _write(self, path: str, data: bytes) -> None:
        if not self._local:
            self.fs.pipe_file(path, data)  # one PUT: atomic on object stores
            return
        write_atomic(path, data)


def _json_bytes(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False).encode()


def is_url(cache: str) -> bool:
    return "://" in cache


def open_store(cache: str | os.PathLike, kind: str = "sqlite") -> Store | SharedStore:
    """The store the config selects: `executor.store=sqlite` (one machine) or `shared`.

    A `cache` that is a URL (`s3://...`, `gs://...`, `file://...`, `memory://...`) can only be
    the shared store; a plain path is SQLite unless `executor.store=shared` says it is a shared
    filesystem (NFS, Lustre) that many machines mount (`executor=ray` says so itself).
    """
    if kind not in STORE_KINDS:
        raise ConfigError(f"executor.store={kind!r}: use one of {', '.join(STORE_KINDS)}")
    cache = str(cache)
    if kind == "shared" or is_url(cache):
        return SharedStore(cache)
    return Store(cache)
