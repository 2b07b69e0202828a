"""`python -m curation.merge out=<dir>`: assemble the parts of a sharded run into one dataset.

Each `shard=i num_shards=N` process writes a complete dataset under `<out>/parts/`. Parts hold
disjoint samples, each sorted by sample id, so a k-way merge yields every mode's rows in
sample-id order; the same shard writer as a single-process run then makes the same bytes.
"""

from __future__ import annotations

import heapq
import json
import shutil
import sys
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow.parquet as pq

from curation.publish import card, emit, manifest

from curation.core import schema
from curation.core.config import load_config


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


def _rows(part: Path, mode: str) -> Iterator[dict]:
    for path in sorted((part / "data" / mode).glob("train-*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            yield from batch.to_pylist()


def merge(out: Path) -> Path:
    parts = find_parts(out)
    docs = [manifest.read(p) for p in parts]
    modes = list(docs[0]["modes"])
    for doc in docs[1:]:
        if list(doc["modes"]) != modes or doc["recipe"] != docs[0]["recipe"]:
            raise MergeError("the parts were built by different recipes; merge only parts of one run")
    settings = emit.EmitSettings(**docs[0]["config"]["emit"])
    staging = out / ".staging-merge"
    shutil.rmtree(staging, ignore_errors=True)
    summaries = []
    for mode in modes:
        s = emit.ModeSummary(mode)
        writer = emit.ShardWriter(staging / "data" / mode, schema.load(mode).arrow_schema(),
                                  shard_bytes=int(settings.shard_size_mb * 1024 * 1024),
                                  row_group_rows=settings.row_group_rows)
        for row in heapq.merge(*(_rows(p, mode) for p in parts), key=lambda r: r["sample_id"]):
            writer.write(row)
            s.accepted += 1
        s.shards = [{**x, "file": f"data/{mode}/{x['file']}"} for x in writer.close()]
        for doc in docs:
            m = doc["modes"][mode]
            s.sourced += m["sourced"]
            s.rejected += m["rejected"]
            for reason, count in m["rejects_by_reason"].items():
                s.rejects_by_reason[reason] = s.rejects_by_reason.get(reason, 0) + count
        if s.accepted + s.rejected != s.sourced:
            raise MergeError(f"{mode}: parts account for {s.sourced} samples but hold {s.accepted} rows "
                             f"and {s.rejected} rejects")
        summaries.append(s)
    for s in summaries:
        emit.replace_dir(staging / "data" / s.mode, out / "data" / s.mode)
    rejects = [r for p in parts for r in pq.read_table(p / "rejects" / "rejects.parquet").to_pylist()]
    emit.write_rejects(out / "rejects" / "rejects.parquet", rejects)
    doc = merged_manifest(docs, summaries)
    manifest.write(out, doc)
    card.write(out, doc)
    shutil.rmtree(staging, ignore_errors=True)
    return out


def merged_manifest(docs: list[dict], summaries: list[emit.ModeSummary]) -> dict:
    doc = json.loads(json.dumps(docs[0]))
    doc["shard"] = {"index": None, "count": 1, "merged_from": len(docs)}
    doc["modes"] = {s.mode: {"sourced": s.sourced, "accepted": s.accepted, "rejected": s.rejected,
                             "rejects_by_reason": dict(sorted(s.rejects_by_reason.items())), "shards": s.shards,
                             "stages": docs[0]["modes"][s.mode]["stages"]} for s in summaries}
    scored = [d["checker"] for d in docs if d.get("checker")]
    if scored:
        n = sum(c["samples"] for c in scored)
        doc["checker"] = {"samples": n, **{k: sum(c[k] * c["samples"] for c in scored) / n
                                           for k in ("initial_accuracy", "improved_accuracy", "initial_score",
                                                     "improved_score")}}
    for key in ("backend_calls", "cached", "rejected"):
        total: dict[str, int] = {}
        for d in docs:
            for stage, count in d["run"][key].items():
                total[stage] = total.get(stage, 0) + count
        doc["run"][key] = dict(sorted(total.items()))
    doc["run"]["elapsed_s"] = max(d["run"]["elapsed_s"] for d in docs)
    return doc
