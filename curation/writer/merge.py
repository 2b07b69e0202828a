"""`python -m curation.merge out=<dir>`: assemble the parts of a sharded run into one dataset.

Each `shard=i num_shards=N` process writes a complete dataset under `<out>/parts/`. Parts hold
disjoint samples, each sorted by sample id, so a k-way merge yields every mode's rows in
sample-id order; the same shard writer as a single-process run then makes the same bytes.
"""

from __future__ import annotations

import heapq
import itertools
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from curation.pipeline.dedup_pass import KEYS_FILE, duplicates_of, read_keys
from curation.pipeline.gates import GateSettings
from curation.writer import gpu_hours, manifest, quality_figures
from curation.writer.dataset import REJECTS, DatasetWriter, publish_manifest
from curation.writer.emit import EmitSettings
from curation.writer.manifest import CheckerScores, Manifest, ModeSummary, RunAccount, merge_backend_accounting


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
    missing = [str(p) for p in parts if not (p / KEYS_FILE).is_file()]
    if missing:
        raise MergeError(f"{', '.join(missing)} hold no {KEYS_FILE}: rebuild those parts with this version")
    # Duplicates across parts: the run's own dedup pass, over every part's keys.
    try:
        keys = read_keys([p / KEYS_FILE for p in parts])
    except ValueError as exc:
        raise MergeError(str(exc)) from None
    duplicates = duplicates_of(*keys, GateSettings.from_config(first.config["gates"]))
    writer = DatasetWriter(out, {m: tuple(first.modes[m].stages) for m in modes},
                           EmitSettings(**first.config["emit"]), staging_name=".staging-merge")
    turned_away: dict[str, tuple[str, set[str]]] = {}  # duplicate accepted in its part -> (source id, modes)
    for mode in modes:
        rows = heapq.merge(*(_rows(p / "data" / mode, "train-*.parquet") for p in parts),
                           key=lambda r: r["sample_id"])
        for row in rows:
            if row["sample_id"] in duplicates:
                turned_away.setdefault(row["sample_id"], (row["source_id"], set()))[1].add(mode)
            else:
                writer.accept(mode, row)
    for row in _rejects(parts, modes, duplicates, turned_away):
        writer.reject_row(row)
    summaries = writer.finish()
    for s in summaries:
        expected = sum(d.modes[s.mode].sourced for d in docs)
        if s.sourced != expected or s.accepted + s.rejected != s.sourced:
            raise MergeError(f"{s.mode}: the parts' manifests account for {expected} samples but their files hold "
                             f"{s.accepted} rows and {s.rejected} rejects")
    publish_manifest(out, merged_manifest(docs, summaries))
    return out


def _rejects(parts: list[Path], modes: list[str], duplicates: dict, turned_away: dict) -> Iterator[dict]:
    """The parts' rejects in the order one process writes them (sample id, then mode), a duplicate's
    rows replaced by the merged pass's reject in every mode that took the sample."""
    # A sample belongs to one part, so equal sample ids come from one part, in its own order.
    stored = heapq.merge(*(_rows(p / REJECTS.parent, REJECTS.name) for p in parts), key=lambda r: r["sample_id"])
    groups = ((sid, list(rows)) for sid, rows in itertools.groupby(stored, key=lambda r: r["sample_id"]))
    only_accepted = ((sid, []) for sid in sorted(turned_away))
    for sid, both in itertools.groupby(heapq.merge(groups, only_accepted, key=lambda g: g[0]), key=lambda g: g[0]):
        rows = [row for _, group in both for row in group]
        if sid not in duplicates:
            yield from rows
            continue
        source_id, taken = turned_away.get(sid, (rows[0]["source_id"] if rows else None, set()))
        taken = taken | {row["mode"] for row in rows}
        reject = duplicates[sid]
        for mode in (m for m in modes if m in taken):
            yield {"mode": mode, "sample_id": sid, "source_id": source_id, "stage": reject.stage,
                   "reason": reject.reason, "detail": reject.detail}


def merged_manifest(docs: list[Manifest], summaries: list[ModeSummary]) -> Manifest:
    first = docs[0]
    checker = CheckerScores()
    for d in docs:
        if d.checker:
            checker.add(d.checker["samples"], d.checker)
    # The parts ran side by side: the longest is the run's time; backend seconds add up.
    run = RunAccount(elapsed_s=max(d.run.elapsed_s for d in docs),
                     backends=merge_backend_accounting([d.run.backends for d in docs]))
    for d in docs:
        for name in ("backend_calls", "cached", "rejected"):
            total = getattr(run, name)
            for stage, count in getattr(d.run, name).items():
                total[stage] = total.get(stage, 0) + count
    run.rate_accepted(summaries)
    run.gpu_hours = gpu_hours.merge((d.run.gpu_hours for d in docs), sum(s.accepted for s in summaries))
    try:
        quality = quality_figures.merge(d.quality for d in docs)
    except ValueError as exc:
        raise MergeError(f"the parts' quality summaries cannot be added up: {exc}; rebuild the parts") from None
    return Manifest(recipe=first.recipe, shard={"index": None, "count": 1, "merged_from": len(docs)},
                    modes={s.mode: s for s in summaries}, backends=first.backends, checker=checker.to_json(),
                    run=run, config=first.config, quality=quality, pipeline_version=first.pipeline_version,
                    schema_version=first.schema_version, versions=first.versions)
