"""The one publishing path of `curation.run` and `curation.merge`: staged shards, the rejects
table, the manifest and the card, moved into place whole.

    writer = DatasetWriter(out, modes, settings)       # shard writers under <out>/.staging-*
    writer.accept(mode, row) / writer.reject(...)        # rows in sample-id order
    summaries = writer.finish()                          # shards and rejects swapped into place
    publish_manifest(out, manifest)                      # manifest.json, README.md (card)

A reader never sees a half-written folder: everything is written under a staging folder and each
mode's folder replaces the old one in one rename. A process killed before `finish` leaves the
previous dataset as it was; the next run removes the stale staging folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from curation.core import schema
from curation.core.records import Outcome
from curation.writer import card, manifest
from curation.writer.emit import EmitSettings, RejectsWriter, ShardWriter, WriteBehind, replace_dir
from curation.writer.manifest import Manifest, ModeSummary

REJECTS = Path("rejects") / "rejects.parquet"


class DatasetWriter:
    def __init__(self, out: Path, mode_stages: dict[str, tuple[str, ...]], settings: EmitSettings,
                 staging_name: str = ".staging"):
        self.out = out
        self.staging = out / staging_name
        shutil.rmtree(self.staging, ignore_errors=True)  # leftovers of a publish that was killed
        self.summaries = {mode: ModeSummary(mode, stages=list(stages)) for mode, stages in mode_stages.items()}
        shard_bytes = int(settings.shard_size_mb * 1024 * 1024)
        self._io = WriteBehind()  # every mode's row groups, written while the next rows are built
        self._shards = {mode: ShardWriter(self.staging / "data" / mode, schema.load(mode).arrow_schema(),
                                          shard_bytes=shard_bytes, row_group_rows=settings.row_group_rows,
                                          write_behind=self._io)
                        for mode in mode_stages}
        self._rejects = RejectsWriter(self.staging / REJECTS)

    def accept(self, mode: str, row: dict[str, Any], nbytes: int | None = None) -> None:
        self._shards[mode].write(row, nbytes)
        summary = self.summaries[mode]
        summary.sourced += 1
        summary.accepted += 1

    def reject(self, mode: str, outcome: Outcome, stage: str, reason: str, detail: str) -> None:
        self.reject_row({"mode": mode, "sample_id": outcome.sample_id, "source_id": outcome.source_id,
                         "stage": stage, "reason": reason, "detail": detail})

    def reject_row(self, row: dict[str, str]) -> None:
        """A rejects-table row as it is stored (merge copies the parts' rows through this)."""
        self._rejects.write(row)
        summary = self.summaries[row["mode"]]
        summary.sourced += 1
        summary.add_reject(row["stage"], row["reason"])

    def finish(self) -> list[ModeSummary]:
        """Close every writer and move the shards and the rejects table into place."""
        self._rejects.close()
        try:
            for mode, writer in self._shards.items():
                self.summaries[mode].shards = [{**s, "file": f"data/{mode}/{s['file']}"} for s in writer.close()]
        finally:
            self._io.close()
        for mode in self._shards:
            replace_dir(self.staging / "data" / mode, self.out / "data" / mode)
        replace_dir(self.staging / REJECTS.parent, self.out / REJECTS.parent)
        shutil.rmtree(self.staging, ignore_errors=True)
        return list(self.summaries.values())


def publish_manifest(out: Path, doc: Manifest) -> None:
    """The manifest, then the card made from it (the card's header carries per-mode counts)."""
    manifest.write(out, doc)
    card.write(out, doc.to_json())
