"""The store: every stage result by its key, every image once by its content hash.

Crash safety: a result row is one SQLite transaction (WAL mode), and an image is written to a
temporary name and renamed into place before any row refers to it. A process killed at any
instant therefore leaves either the old state or the new one, never a half-written value.
Several processes (shards on one machine) may share a store: SQLite serialises their writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Iterator

from curation.core import images
from curation.core.files import write_atomic
from curation.core.images import ImageRef
from curation.core.records import Outcome, Reject, StageOutput, dedup_from_json, result_from_json

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key   TEXT PRIMARY KEY,
    stage TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    plan_key  TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (plan_key, sample_id)
);
"""


class Store:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "store.sqlite", timeout=60, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a killed process (the case we promise); it may lose the last
        # transactions on power loss, which only costs recomputation.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ stage results

    def get_result(self, key: str) -> StageOutput | Reject | None:
        row = self._db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else result_from_json(json.loads(row[0]))

    def put_result(self, key: str, stage: str, result: StageOutput | Reject) -> None:
        value = json.dumps(result.to_json(), sort_keys=True, ensure_ascii=False)
        self._db.execute("INSERT OR REPLACE INTO results (key, stage, value) VALUES (?, ?, ?)", (key, stage, value))

    # ------------------------------------------------------------------ per-run outcomes

    def put_outcome(self, run_key: str, outcome: Outcome) -> None:
        value = json.dumps(outcome.to_json(), sort_keys=True, ensure_ascii=False)
        self._db.execute("INSERT OR REPLACE INTO outcomes (plan_key, sample_id, value) VALUES (?, ?, ?)",
                         (run_key, outcome.sample_id, value))

    def clear_outcomes(self, run_key: str) -> None:
        """Forget a run's outcomes: a run walks every sample again (reading results from the store),
        so afterwards the table holds exactly the samples of this run, whatever an earlier one saw."""
        self._db.execute("DELETE FROM outcomes WHERE plan_key = ?", (run_key,))

    def count_outcomes(self, run_key: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM outcomes WHERE plan_key = ?", (run_key,)).fetchone()[0]

    def iter_outcomes(self, run_key: str) -> Iterator[Outcome]:
        """A run's outcomes in sample-id order (the order of every shard), streamed from the
        primary-key index: one read of each, nothing sorted or held in memory."""
        # A connection of its own: writers (another shard's process) may go on meanwhile.
        reader = sqlite3.connect(self.root / "store.sqlite", timeout=60, isolation_level=None)
        try:
            rows = reader.execute("SELECT value FROM outcomes WHERE plan_key = ? ORDER BY sample_id", (run_key,))
            for (value,) in rows:
                yield Outcome.from_json(json.loads(value))
        finally:
            reader.close()

    def iter_dedup_keys(self, run_key: str) -> Iterator[tuple[tuple, str | None]]:
        """Each outcome's dedup keys (when it has them) and its `hq_image_embedding` (or None), read
        by SQLite itself from the stored JSON: the end-of-run dedup pass parses no whole outcome."""
        reader = sqlite3.connect(self.root / "store.sqlite", timeout=60, isolation_level=None)
        try:
            rows = reader.execute("SELECT sample_id, json_extract(value, '$.dedup'), "
                                  "json_extract(value, '$.fields.hq_image_embedding') FROM outcomes "
                                  "WHERE plan_key = ? AND json_extract(value, '$.dedup') IS NOT NULL", (run_key,))
            for sample_id, keys, embedding in rows:
                yield dedup_from_json(sample_id, json.loads(keys)), embedding
        finally:
            reader.close()

    # ------------------------------------------------------------------ images

    def _image_path(self, sha: str, fmt: str) -> Path:
        return self.images_dir / sha[:2] / f"{sha}.{fmt}"

    def put_image_bytes(self, data: bytes, ref: ImageRef | None = None) -> ImageRef:
        """Store encoded bytes as they are (probing them unless the caller already did)."""
        ref = ref or images.probe(data)
        path = self._image_path(ref.sha256, ref.format)
        if not path.exists():
            write_atomic(path, data)
        return ref

    def image_bytes(self, ref: ImageRef) -> bytes:
        return self._image_path(ref.sha256, ref.format).read_bytes()

    def has_image(self, ref: ImageRef) -> bool:
        return self._image_path(ref.sha256, ref.format).exists()
