"""Check a built dataset the way its readers will read it, before anyone else has to find out.

`validate(data)` returns a list of `Problem`s (empty: the dataset is sound). Each problem has a
`Kind` (compare kinds, never messages), the file it is about, the mode, and a sentence. The
checks follow what the readers do:

- the trainer (`curation.trainer.dataset`) globs `data/<mode>/*.parquet` and reads row groups
  with pyarrow, so every shard must have the mode's columns and types, and every image must
  decode (the official SFT reader silently skips a row whose image does not);
- `datasets.load_dataset` reads the card's `configs:` block and the `huggingface` schema
  metadata, so every mode present needs a config whose `data_files` match exactly its shards,
  and the feature metadata must say which columns are images;
- people read the manifest and the card, so counts must agree with the shards and the rejects,
  and every figure the card links must exist.

Shards are checked in parallel (`workers`): decoding every image of a large dataset is the slow
part, and it is what a trainer would otherwise discover hours into a run.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from enum import Enum
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow.parquet as pq
import yaml

from curation.core import images, schema
from curation.core.cpus import usable_cpus
from curation.writer.manifest import FILENAME as MANIFEST

CARD = "README.md"
REJECTS = "rejects/rejects.parquet"
#: Below this many shard bytes, starting worker processes costs more than decoding the images.
PARALLEL_BYTES = 64 * 1024 * 1024
#: At most this many problems of one kind are listed per shard; the rest are counted in one more.
EXAMPLES_PER_KIND = 3


class Kind(str, Enum):
    MANIFEST_MISSING = "manifest_missing"
    MANIFEST_INVALID = "manifest_invalid"
    CARD_MISSING = "card_missing"
    CARD_HEADER_INVALID = "card_header_invalid"
    MODE_NOT_IN_CARD = "mode_not_in_card"
    CARD_CONFIG_MISMATCH = "card_config_mismatch"
    CARD_ASSET_MISSING = "card_asset_missing"
    UNKNOWN_MODE_FOLDER = "unknown_mode_folder"
    MODE_NOT_IN_MANIFEST = "mode_not_in_manifest"
    MODE_FOLDER_MISSING = "mode_folder_missing"
    SHARD_MISSING = "shard_missing"
    SHARD_NOT_IN_MANIFEST = "shard_not_in_manifest"
    SHARD_UNREADABLE = "shard_unreadable"
    COLUMN_MISSING = "column_missing"
    COLUMN_UNEXPECTED = "column_unexpected"
    COLUMN_TYPE = "column_type"
    FEATURES_METADATA = "features_metadata"
    REQUIRED_VALUE_NULL = "required_value_null"
    IMAGE_UNDECODABLE = "image_undecodable"
    LINEAGE_INVALID = "lineage_invalid"
    DUPLICATE_SAMPLE_ID = "duplicate_sample_id"
    ROWS_OUT_OF_ORDER = "rows_out_of_order"
    COUNT_MISMATCH = "count_mismatch"
    ACCOUNTING_MISMATCH = "accounting_mismatch"
    REJECTS_MISSING = "rejects_missing"
    REJECTS_MISMATCH = "rejects_mismatch"


@dataclass(frozen=True)
class Problem:
    kind: Kind
    file: str  # relative to the dataset folder
    mode: str | None
    detail: str

    def __str__(self) -> str:
        where = f"{self.file} [{self.mode}]" if self.mode else self.file
        return f"{self.kind.value}: {where}: {self.detail}"


class ValidationFailed(Exception):
    """Raised by callers that refuse to go on with a dataset that has problems."""

    exit_status = 1  # the dataset is wrong, not the command: as `validate` itself reports it

    def __init__(self, data: Path, problems: Sequence[Problem]):
        self.data = data
        self.problems = list(problems)
        super().__init__(f"{data}: {len(self.problems)} problem(s)")


def validate(data: Path | str, *, workers: int | None = None) -> list[Problem]:
    root = Path(data)
    problems: list[Problem] = []
    doc = read_manifest(root, problems)
    modes_on_disk = _mode_folders(root, problems)
    manifest_modes = dict(doc["modes"]) if doc is not None else {}
    if doc is not None:
        for mode in modes_on_disk:
            if mode not in manifest_modes:
                problems.append(Problem(Kind.MODE_NOT_IN_MANIFEST, f"data/{mode}", mode,
                                        "shards are present but the manifest does not list this mode"))
        for mode in manifest_modes:
            if mode not in modes_on_disk:
                problems.append(Problem(Kind.MODE_FOLDER_MISSING, f"data/{mode}", mode,
                                        "the manifest lists this mode but its folder is missing"))
    present = [m for m in schema.MODE_KEYS if m in modes_on_disk or m in manifest_modes]
    shards = {m: sorted(p.relative_to(root).as_posix() for p in (root / "data" / m).glob("*.parquet"))
              for m in present if m in modes_on_disk}
    results = _check_shards(root, [(m, s) for m, files in shards.items() for s in files], workers)
    for mode, files in shards.items():
        mode_results = [results[f] for f in files]
        for result in mode_results:
            problems += result.problems
        _check_sample_ids(root, mode, mode_results, problems)
        if mode in manifest_modes:
            _check_counts(mode, manifest_modes[mode], files, mode_results, problems)
    if doc is not None:
        _check_rejects(root, manifest_modes, problems)
    _check_card(root, present, shards, problems)
    return problems


def read_manifest(root: Path, problems: list[Problem]) -> dict | None:
    """The manifest, or None after recording why there is none to use."""
    path = root / MANIFEST
    if not path.is_file():
        problems.append(Problem(Kind.MANIFEST_MISSING, MANIFEST, None, "no manifest.json"))
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(Problem(Kind.MANIFEST_INVALID, MANIFEST, None, f"not valid JSON: {exc}"))
        return None
    modes = doc.get("modes") if isinstance(doc, dict) else None
    if not isinstance(modes, dict) or not all(isinstance(m, dict) for m in modes.values()):
        problems.append(Problem(Kind.MANIFEST_INVALID, MANIFEST, None, "has no `modes` mapping"))
        return None
    return doc


def _mode_folders(root: Path, problems: list[Problem]) -> list[str]:
    folder = root / "data"
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if path.name in schema.MODE_KEYS:
            found.append(path.name)
        else:
            problems.append(Problem(Kind.UNKNOWN_MODE_FOLDER, f"data/{path.name}", None,
                                    f"not an IRGL mode key (expected one of {', '.join(schema.MODE_KEYS)})"))
    return found


# ----------------------------------------------------------------------------- shards


@dataclass
class IdOrder:
    """A shard's sample ids as the order check needs them, in constant memory: rows are written in
    sample-id order, so a repeat is next to its twin, and shards follow each other in that order."""

    first: str | None = None
    last: str | None = None
    repeats: int = 0  # a row whose id equals the row before it
    disorder: int = 0  # a row whose id is smaller than the row before it

    def add(self, ids: Sequence[str | None]) -> None:
        for sample_id in ids:
            if sample_id is None:
                continue
            if self.last is not None:
                self.repeats += sample_id == self.last
                self.disorder += sample_id < self.last
            self.first = self.first if self.first is not None else sample_id
            self.last = sample_id


@dataclass
class ShardResult:
    file: str
    rows: int | None  # None: the footer could not be read
    ids: IdOrder
    problems: list[Problem]


def _check_shards(root: Path, shards: list[tuple[str, str]], workers: int | None) -> dict[str, ShardResult]:
    workers = min(workers or usable_cpus(), len(shards))
    size = sum((root / f).stat().st_size for _, f in shards)
    if workers <= 1 or size < PARALLEL_BYTES:
        return {f: check_shard(root, m, f) for m, f in shards}
    # spawn, not fork: pyarrow's thread pools do not survive a fork reliably.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {f: pool.submit(check_shard, root, m, f) for m, f in shards}
        return {f: fut.result() for f, fut in futures.items()}


def check_shard(root: Path, mode: str, file: str) -> ShardResult:
    """Schema, required values, images and lineage of one shard, read one row group at a time."""
    problems: list[Problem] = []
    found: Counter = Counter()

    def add(kind: Kind, detail: str) -> None:
        found[kind] += 1
        if found[kind] <= EXAMPLES_PER_KIND:
            problems.append(Problem(kind, file, mode, detail))

    mode_schema = schema.load(mode)
    try:
        reader = pq.ParquetFile(root / file)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError… for a file that is not Parquet
        return ShardResult(file, None, IdOrder(), [Problem(Kind.SHARD_UNREADABLE, file, mode, f"{type(exc).__name__}: {exc}")])
    columns = _check_schema(reader.schema_arrow, mode_schema, add)
    ids = IdOrder()
    try:
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group, columns=columns)
            _check_rows(table, mode_schema, group, add, ids)
    except Exception as exc:  # a corrupt page is a problem of this shard, not a crash of the check
        add(Kind.SHARD_UNREADABLE, f"{type(exc).__name__}: {exc}")
    for kind, count in found.items():
        if count > EXAMPLES_PER_KIND:
            problems.append(Problem(kind, file, mode, f"… and {count - EXAMPLES_PER_KIND} more of this kind"))
    return ShardResult(file, reader.metadata.num_rows, ids, problems)


def _check_schema(actual, mode_schema: schema.ModeSchema, add) -> list[str]:
    """Compare columns, Arrow types and the `huggingface` feature metadata; returns the columns to read."""
    expected = mode_schema.arrow_schema()
    names = set(actual.names)
    for field in expected:
        if field.name not in names:
            add(Kind.COLUMN_MISSING, f"column {field.name!r} is missing")
        elif not actual.field(field.name).type.equals(field.type):
            add(Kind.COLUMN_TYPE, f"column {field.name!r} is {actual.field(field.name).type}, expected {field.type}")
    for name in actual.names:
        if name not in expected.names:
            add(Kind.COLUMN_UNEXPECTED, f"column {name!r} is not in schemas/{mode_schema.mode}.yaml")
    raw = (actual.metadata or {}).get(b"huggingface")
    if raw is None:
        add(Kind.FEATURES_METADATA, "no `huggingface` schema metadata: `datasets` would not decode the images")
    else:
        features = _features_of(raw)
        wanted = json.loads(expected.metadata[b"huggingface"])["info"]["features"]
        if features != wanted:
            add(Kind.FEATURES_METADATA, f"feature metadata {features} differs from the schema's {wanted}")
    return [f.name for f in expected if f.name in names and actual.field(f.name).type.equals(f.type)]


def _check_rows(table, mode_schema: schema.ModeSchema, group: int, add, order: IdOrder) -> None:
    ids = table.column("sample_id").to_pylist() if "sample_id" in table.column_names else [None] * table.num_rows
    order.add(ids)
    for col in mode_schema.columns:
        if col.name not in table.column_names:
            continue
        values = table.column(col.name).to_pylist()
        for row, value in enumerate(values):
            where = f"row group {group} row {row} (sample {ids[row]})"
            if value is None or (col.is_image and value.get("bytes") is None):
                if col.required:
                    add(Kind.REQUIRED_VALUE_NULL, f"{where}: required column {col.name!r} has no value")
                continue
            if col.is_image:
                try:
                    images.probe(value["bytes"])
                except images.ImageDecodeError as exc:
                    add(Kind.IMAGE_UNDECODABLE, f"{where}: {col.name!r} does not decode ({exc})")
            elif col.name == "lineage" and not _is_json_object(value):
                add(Kind.LINEAGE_INVALID, f"{where}: lineage is not a JSON object")


def _features_of(raw: bytes) -> Any:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "unparsable metadata"
    return doc.get("info", {}).get("features") if isinstance(doc, dict) else doc


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def _check_sample_ids(root: Path, mode: str, results: list[ShardResult], problems: list[Problem]) -> None:
    """Every sample id once, rows in sample-id order across the mode's shards (as emit writes them).

    Checked from each shard's first and last id and its neighbour counts, so memory does not grow
    with the dataset. Only when the order is broken — then a repeat need not sit next to its twin —
    are the ids read again, one column, to count repeats exactly."""
    repeats = sum(r.ids.repeats for r in results)
    disorder = sum(r.ids.disorder for r in results)
    bounds = [r.ids for r in results if r.ids.first is not None]
    for before, after in zip(bounds, bounds[1:]):
        repeats += before.last == after.first
        disorder += before.last > after.first
    if disorder:
        problems.append(Problem(Kind.ROWS_OUT_OF_ORDER, f"data/{mode}", mode,
                                f"{disorder} row(s) follow a larger sample id (shards in name order); "
                                "a run writes rows in sample-id order"))
        counts = Counter(i for r in results if r.rows is not None for i in _sample_ids(root / r.file))
        repeated = sorted(i for i, n in counts.items() if n > 1)
        if repeated:
            problems.append(Problem(Kind.DUPLICATE_SAMPLE_ID, f"data/{mode}", mode,
                                    f"{len(repeated)} sample id(s) appear more than once, e.g. {repeated[:3]}"))
    elif repeats:
        problems.append(Problem(Kind.DUPLICATE_SAMPLE_ID, f"data/{mode}", mode,
                                f"{repeats} row(s) repeat the sample id of the row before them"))


def _sample_ids(path: Path) -> Iterator[str]:
    try:
        reader = pq.ParquetFile(path)
        if "sample_id" not in reader.schema_arrow.names:
            return
        for batch in reader.iter_batches(columns=["sample_id"]):
            yield from (i for i in batch.column(0).to_pylist() if i is not None)
    except Exception:  # already reported as this shard's own problem
        return


# ----------------------------------------------------------------------------- counts


def _check_counts(mode: str, entry: dict, files: list[str], results: list[ShardResult],
                  problems: list[Problem]) -> None:
    listed = {s["file"]: s["rows"] for s in entry.get("shards", [])}
    for file in sorted(set(listed) - set(files)):
        problems.append(Problem(Kind.SHARD_MISSING, file, mode, "listed in the manifest but not on disk"))
    for result in results:
        if result.file not in listed:
            problems.append(Problem(Kind.SHARD_NOT_IN_MANIFEST, result.file, mode,
                                    "on disk (and read by the trainer's glob) but not listed in the manifest"))
        elif result.rows is not None and result.rows != listed[result.file]:
            problems.append(Problem(Kind.COUNT_MISMATCH, result.file, mode,
                                    f"holds {result.rows} rows, the manifest says {listed[result.file]}"))
    rows = sum(r.rows for r in results if r.rows is not None)
    if rows != entry.get("accepted"):
        problems.append(Problem(Kind.COUNT_MISMATCH, f"data/{mode}", mode,
                                f"the shards hold {rows} rows, the manifest says {entry.get('accepted')} accepted"))
    if entry.get("sourced") != (entry.get("accepted") or 0) + (entry.get("rejected") or 0):
        problems.append(Problem(Kind.ACCOUNTING_MISMATCH, MANIFEST, mode,
                                f"sourced {entry.get('sourced')} != accepted {entry.get('accepted')} "
                                f"+ rejected {entry.get('rejected')}"))


def _check_rejects(root: Path, modes: dict[str, dict], problems: list[Problem]) -> None:
    path = root / REJECTS
    if not path.is_file():
        problems.append(Problem(Kind.REJECTS_MISSING, REJECTS, None, "the rejects file is missing"))
        return
    try:
        table = pq.read_table(path, columns=["mode", "stage", "reason"])
    except Exception as exc:  # pyarrow: ArrowInvalid, KeyError for a missing column, OSError
        problems.append(Problem(Kind.REJECTS_MISMATCH, REJECTS, None, f"unreadable: {type(exc).__name__}: {exc}"))
        return
    by_reason: dict[str, Counter] = {}
    for row in table.to_pylist():
        by_reason.setdefault(row["mode"], Counter())[f"{row['stage']}/{row['reason']}"] += 1
    for mode, entry in modes.items():
        found = by_reason.get(mode, Counter())
        if sum(found.values()) != entry.get("rejected") or dict(found) != dict(entry.get("rejects_by_reason", {})):
            problems.append(Problem(Kind.REJECTS_MISMATCH, REJECTS, mode,
                                    f"lists {dict(found)} but the manifest says {entry.get('rejects_by_reason')} "
                                    f"({entry.get('rejected')} rejected)"))
    for mode in sorted(set(by_reason) - set(modes)):
        problems.append(Problem(Kind.REJECTS_MISMATCH, REJECTS, mode, "rejects of a mode the manifest does not list"))


# ----------------------------------------------------------------------------- card


def card_header(text: str) -> dict | None:
    """The YAML header of a dataset card, or None when it has none that parses to a mapping."""
    match = re.match(r"---\r?\n(.*?)\r?\n---\r?\n", text, re.DOTALL)
    if match is None:
        return None
    try:
        header = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return None
    return header if isinstance(header, dict) else None


def _patterns(data_files: Any) -> list[str]:
    """Every path pattern of a config's `data_files` (a string, a list, or split entries)."""
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, dict):
        return _patterns(data_files.get("path"))
    if isinstance(data_files, list):
        return [p for item in data_files for p in _patterns(item)]
    return []


def _check_card(root: Path, modes: list[str], shards: dict[str, list[str]], problems: list[Problem]) -> None:
    path = root / CARD
    if not path.is_file():
        problems.append(Problem(Kind.CARD_MISSING, CARD, None, "no dataset card (README.md)"))
        return
    text = path.read_text(encoding="utf-8")
    header = card_header(text)
    if header is None or not isinstance(header.get("configs"), list):
        problems.append(Problem(Kind.CARD_HEADER_INVALID, CARD, None, "no YAML header with a `configs:` list"))
        return
    configs = {c.get("config_name"): _patterns(c.get("data_files")) for c in header["configs"] if isinstance(c, dict)}
    every_shard = [f for files in shards.values() for f in files]
    for mode in modes:
        if mode not in configs:
            problems.append(Problem(Kind.MODE_NOT_IN_CARD, CARD, mode,
                                    f"the `configs:` block has no entry for {mode}: `load_dataset` cannot select it"))
            continue
        matched = {f for f in every_shard if any(fnmatch.fnmatch(f, p) for p in configs[mode])}
        wanted = set(shards.get(mode, []))
        if matched != wanted:
            problems.append(Problem(Kind.CARD_CONFIG_MISMATCH, CARD, mode,
                                    f"data_files {configs[mode]} match {sorted(matched)}, expected {sorted(wanted)}"))
    for name in sorted(n for n in configs if n not in modes):
        problems.append(Problem(Kind.CARD_CONFIG_MISMATCH, CARD, name if name in schema.MODE_KEYS else None,
                                f"config {name!r} names no mode of this dataset"))
    for link in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text):
        if "://" not in link and not (root / link).is_file():
            problems.append(Problem(Kind.CARD_ASSET_MISSING, CARD, None, f"links {link}, which does not exist"))

