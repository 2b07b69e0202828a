"""`python -m curation.merge out=<dir>`: assemble the parts of a sharded run into one dataset.

Each `shard=i num_shards=N` process writes a complete dataset under `<out>/parts/`. Parts hold
disjoint samples, each sorted by sample id, so a k-way merge yields every mode's rows in
sample-id order; the same shard writer as a single-process run then makes the same bytes.
"""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from curation.publish import manifest
from curation.publish.dataset import REJECTS, DatasetWriter, publish_manifest
from curation.publish.emit import EmitSettings
from curation.publish.manifest import CheckerScores, Manifest, ModeSummary, RunAccount


class MergeError(RuntimeError):
    pass


def find_parts(out: Path) -> list[Path]:
    parts = sorted((out / "parts").glob("part-*-of-*"))
    if not parts:
        raise MergeError(f"no parts under {out / 'parts'}: run `python -m curation.run ... shard=i num_shards=N` first")
    counts = {p.name.rsplit("-of-", 1)[1] for p in parts}
    if len(counts) != 1:
        raise MergeError(f"parts of different runs are mixed under {out / 'parts'}: {sorted(counts)}")
    total = int(counts.pop())
    present = {int(p.name.split("-")[1]) for p in parts}
    missing = sorted(set(range(total)) - present)
    if missing:
        raise MergeError(f"parts {missing} of {total} are missing; run those shards before merging")
    for part in parts:
        if not (part / manifest.FILENAME).is_file():
            raise MergeError(f"{part} has no manifest: that shard did not finish")
    return parts


def _rows(path_folder: Path, pattern: str) -> Iterator[dict]:
    for path in sorted(path_folder.glob(pattern)):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            yield from batch.to_pylist()


def merge(out: Path) -> Path:
    parts = find_parts(out)
    docs = [manifest.load(p) for p in parts]
    first = docs[0]
    modes = list(first.modes)
    for doc in docs[1:]:
        if list(doc.modes) != modes or doc.recipe != first.recipe:
            raise MergeError("the parts were built by different recipes; merge only parts of one run")
    writer = DatasetWriter(out, {m: tuple(first.modes[m].stages) for m in modes},
                           EmitSettings(**first.config["emit"]), staging_name=".staging-merge")
    for mode in modes:
        rows = heapq.merge(*(_rows(p / "data" / mode, "train-*.parquet") for p in parts),
                           key=lambda r: r["sample_id"])
        for row in rows:
            writer.accept(mode, row)
    # A sample belongs to one part, so equal sample ids come from one part, in its own order.
    for row in heapq.merge(*(_rows(p / REJECTS.parent, REJECTS.name) for p in parts), key=lambda r: r["sample_id"]):
        writer.reject_row(row)
    summaries = writer.finish()
    for s in summaries:
        expected = sum(d.modes[s.mode].sourced for d in docs)
        if s.sourced != expected or s.accepted + s.rejected != s.sourced:
            raise MergeError(f"{s.mode}: the parts' manifests account for {expected} samples but their files hold "
                             f"{s.accepted} rows and {s.rejected} rejects")
    publish_manifest(out, merged_manifest(docs, summaries))
    return out


def merged_manifest(docs: list[Manifest], summaries: list[ModeSummary]) -> Manifest:
    first = docs[0]
    checker = CheckerScores()
    for d in docs:
        if d.checker:
            checker.add(d.checker["samples"], d.checker)
    run = RunAccount(elapsed_s=max(d.run.elapsed_s for d in docs))
    for d in docs:
        for name in ("backend_calls", "cached", "rejected"):
            total = getattr(run, name)
            for stage, count in getattr(d.run, name).items():
                total[stage] = total.get(stage, 0) + count
    return Manifest(recipe=first.recipe, shard={"index": None, "count": 1, "merged_from": len(docs)},
                    modes={s.mode: s for s in summaries}, backends=first.backends, checker=checker.to_json(),
                    run=run, config=first.config, pipeline_version=first.pipeline_version,
                    schema_version=first.schema_version, versions=first.versions)
