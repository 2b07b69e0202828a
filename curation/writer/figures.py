"""What a built dataset's rows and manifest say, as numbers and small PNG plots.

Shared by the dataset card (`card.py`) and the HTML report (`report.py`): `funnel` and
`stage_order` read the manifest alone; `collect` reads every row of every shard once for what
only the rows know (thinking lengths, image sizes, models and template versions in lineage,
tokens and backend seconds per sample); `plots` draws them.

`collect` is a streaming pass with bounded memory, so it costs the same memory at IRGL-300K as
at 500 rows: it reads one row group of a few columns at a time, and keeps only counts —
histograms with fixed-width bins (`Histogram`), counters of distinct image sizes, sums for
costs, sets of model and template versions. It never keeps a list of every value or every id.
Shards are independent, so they are read in worker processes (`workers`) and their partial
`Stats` merged; merging is order-free, so the result does not depend on the number of workers.

The card's pass is kept: `card.write` saves the statistics beside its plots (`assets/figures.json`,
with the size and modification time of every shard they were read from), and `load_or_collect`
uses them while the shards are unchanged, so the report does not read every row again.

A new figure over the rows is a field of `Stats` (a `Histogram` for a distribution), a line in
`shard_stats` that fills it, a line in `merge`, `to_json` and `from_json`, and a `_plot_*`
function registered in `ROW_PLOTS`.
"""

from __future__ import annotations

import io
import json
import struct
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from curation.pipeline.stages import registered
from curation.core import schema
from curation.core.cpus import usable_cpus
from curation.writer import quality_figures
from curation.writer import emit

THINKING_COLUMNS = ("initial_thinking", "improving_thinking")
# Lineage keys a backend records per stage (teachers: tokens and latency of the accepted attempt).
TEMPLATE_KEY = "template"
STAGE_ROLES = {cls.name: cls.role for cls in registered()}
#: Below this many shard bytes, starting worker processes (~2 s each, spawned) costs more than the pass (~3 s per GB).
PARALLEL_BYTES = 2 * 1024 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A PNG's size is in its first chunk (IHDR), bytes 16-24: reading 24 bytes of each image is enough.
PNG_HEADER_BYTES = 24


# ----------------------------------------------------------------------------- what the manifest says


def funnel(entry: dict) -> list[tuple[str, int, int]]:
    """`(stage, entered, passed)` per stage of one mode, from its manifest entry alone."""
    rejected = Counter()
    for key, count in entry["rejects_by_reason"].items():
        rejected[key.split("/", 1)[0]] += count
    order = ["gates", *entry.get("stages", []), emit.VALIDATE]
    order = sorted(set(rejected) - set(order)) + order  # e.g. a source's own read failures come first
    rows, alive = [], entry["sourced"]
    for stage in order:
        rows.append((stage, alive, alive - rejected[stage]))
        alive -= rejected[stage]
    return rows


def stage_order(doc: dict) -> list[str]:
    """Every stage of any mode's funnel, in data-flow order (the plan's, as each mode lists its stages)."""
    canonical = ["gates", *_merged_order([entry.get("stages", []) for entry in doc["modes"].values()]), emit.VALIDATE]
    found = {s for entry in doc["modes"].values() for s, _, _ in funnel(entry)}
    return sorted(found - set(canonical)) + [s for s in canonical if s in found]


def _merged_order(lists: list[list[str]]) -> list[str]:
    """One order that keeps the relative order of every list (each is a part of the same plan order)."""
    after: dict[str, set[str]] = {}
    for names in lists:
        for i, name in enumerate(names):
            after.setdefault(name, set()).update(names[:i])
    order: list[str] = []
    while len(order) < len(after):
        order.append(min((n for n in after if n not in order and after[n] <= set(order)),
                         key=lambda n: min(names.index(n) if n in names else len(names) for names in lists)))
    return order


# The pairwise judge's outcomes and its reject (curation/pipeline/stages/pairwise_judge.py).
JUDGE, IMPROVED_PREFERRED, INITIAL_JUDGED_BETTER = "pairwise_judge", "improved_preferred", "initial_judged_better"
#: IRG (arXiv 2509.06945): the share of pairs where the improved image was preferred to the initial one.
PAPER_PREFERENCE_RATE = 0.633


def preference_rates(doc: dict, stats: "Stats") -> list[tuple[str, int, int, Counter]]:
    """`(mode, improved preferred, judged, outcomes)` per mode the judge served: the rows it kept
    (by the outcome in their lineage) and the pairs it rejected (the manifest's count)."""
    out = []
    for mode, entry in doc["modes"].items():
        counts = Counter(stats.outcomes.get(JUDGE, {}).get(mode, {}))
        rejected = entry["rejects_by_reason"].get(f"{JUDGE}/{INITIAL_JUDGED_BETTER}", 0)
        if rejected:
            counts[INITIAL_JUDGED_BETTER] += rejected
        judged = sum(counts.values())
        if judged:
            out.append((mode, counts[IMPROVED_PREFERRED], judged, counts))
    return out


# ----------------------------------------------------------------------------- what the rows say


@dataclass
class Histogram:
    """Counts in fixed-width bins: bin `i` holds the values in `[i * width, (i + 1) * width)`.

    With `width=1` over integers (characters, pixels) each bin is one value, so quantiles are
    exact; memory grows with the range of the values, never with how many there are.
    """

    width: float = 1
    counts: Counter = field(default_factory=Counter)  # bin index -> values in it

    def add(self, value: float, times: int = 1) -> None:
        self.counts[int(value // self.width)] += times

    def merge(self, other: "Histogram") -> None:
        if other.width != self.width:
            raise ValueError(f"cannot merge histograms of bin widths {self.width} and {other.width}")
        self.counts.update(other.counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def quantile(self, q: float) -> float:
        """The lower edge of the bin holding the value of rank `int(q * (total - 1))` (0-based)."""
        if not self.counts:
            raise ValueError("quantile of an empty histogram")
        rank, seen = int(q * (self.total - 1)), 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen > rank:
                return index * self.width
        raise AssertionError("unreachable: ranks stop at total - 1")


@dataclass
class Stats:
    """What every row says, beyond the manifest's counts; mergeable, so shards are read apart."""

    rows: Counter = field(default_factory=Counter)  # mode -> rows read
    split_bytes: Counter = field(default_factory=Counter)  # mode -> uncompressed bytes (Parquet footers)
    thinking_chars: dict[str, dict[str, Histogram]] = field(default_factory=dict)  # column -> mode -> chars
    image_sizes: dict[str, Counter] = field(default_factory=dict)  # pipeline field -> Counter[(w, h)]
    unreadable_images: int = 0  # `curation.after_run.validate` names them; stats only count them
    unreadable_lineage: int = 0
    models: dict[str, set] = field(default_factory=dict)  # stage -> {(id, revision)}
    templates: dict[str, set] = field(default_factory=dict)  # template name -> {versions}
    # stage -> mode -> Counter of the `outcome` its lineage names (the judge's preference, per row)
    outcomes: dict[str, dict[str, Counter]] = field(default_factory=dict)

    def merge(self, other: "Stats") -> None:
        self.rows.update(other.rows)
        self.split_bytes.update(other.split_bytes)
        for col, by_mode in other.thinking_chars.items():
            for mode, hist in by_mode.items():
                self.thinking_chars.setdefault(col, {}).setdefault(mode, Histogram(hist.width)).merge(hist)
        for name, sizes in other.image_sizes.items():
            self.image_sizes.setdefault(name, Counter()).update(sizes)
        self.unreadable_images += other.unreadable_images
        self.unreadable_lineage += other.unreadable_lineage
        for mine, theirs in ((self.models, other.models), (self.templates, other.templates)):
            for key, values in theirs.items():
                mine.setdefault(key, set()).update(values)
        for stage, by_mode in other.outcomes.items():
            for mode, counts in by_mode.items():
                self.outcomes.setdefault(stage, {}).setdefault(mode, Counter()).update(counts)


    def to_json(self) -> dict:
        return {
            "rows": dict(self.rows), "split_bytes": dict(self.split_bytes),
            "thinking_chars": {col: {mode: {"width": h.width, "counts": sorted(h.counts.items())}
                                     for mode, h in by_mode.items()} for col, by_mode in self.thinking_chars.items()},
            "image_sizes": {name: [[w, h, n] for (w, h), n in sizes.items()]
                            for name, sizes in self.image_sizes.items()},
            "unreadable_images": self.unreadable_images, "unreadable_lineage": self.unreadable_lineage,
            "models": {stage: sorted(map(list, v)) for stage, v in self.models.items()},
            "templates": {name: sorted(v) for name, v in self.templates.items()},
            "outcomes": {stage: {mode: dict(c) for mode, c in by_mode.items()} for stage, by_mode in self.outcomes.items()},
        }

    @classmethod
    def from_json(cls, doc: dict) -> "Stats":
        return cls(
            rows=Counter(doc["rows"]), split_bytes=Counter(doc["split_bytes"]),
            thinking_chars={col: {mode: Histogram(h["width"], Counter({int(i): n for i, n in h["counts"]}))
                                  for mode, h in by_mode.items()} for col, by_mode in doc["thinking_chars"].items()},
            image_sizes={name: Counter({(w, h): n for w, h, n in sizes}) for name, sizes in doc["image_sizes"].items()},
            unreadable_images=doc["unreadable_images"], unreadable_lineage=doc["unreadable_lineage"],
            models={stage: {tuple(m) for m in v} for stage, v in doc["models"].items()},
            templates={name: set(v) for name, v in doc["templates"].items()},
            outcomes={stage: {mode: Counter(c) for mode, c in by_mode.items()}
                      for stage, by_mode in doc["outcomes"].items()},
        )


SAVED = "figures.json"  # in the card's assets folder
SAVED_VERSION = 2  # 2: per-stage outcomes (the judge's preference)


def shard_files(out: Path, doc: dict) -> list[tuple[str, Path]]:
    """`(mode, shard)` of every mode in the manifest, in mode then file order."""
    return [(mode, path) for mode in doc["modes"] for path in sorted((Path(out) / "data" / mode).glob("train-*.parquet"))]


def collect(out: Path, doc: dict, *, workers: int | None = None) -> Stats:
    """One streaming pass over every row of every shard; `workers` processes (None: one per CPU
    when the shards are large enough for processes to pay off)."""
    tasks = shard_files(out, doc)
    if workers is None:
        size = sum(path.stat().st_size for _, path in tasks)
        workers = usable_cpus() if size >= PARALLEL_BYTES else 1
    workers = max(1, min(workers, len(tasks)))
    stats = Stats()
    if workers == 1:
        for mode, path in tasks:
            stats.merge(shard_stats(mode, str(path)))
        return stats
    # spawn, not fork: pyarrow's thread pools do not survive a fork reliably.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        for part in pool.map(shard_stats, [m for m, _ in tasks], [str(p) for _, p in tasks]):
            stats.merge(part)  # in task order: the same Stats whatever the number of workers
    return stats


def fingerprint(out: Path, doc: dict) -> list:
    """What the statistics were read from: every shard's path, size and modification time."""
    return [[mode, path.name, st.st_size, st.st_mtime_ns]
            for mode, path in shard_files(out, doc) for st in [path.stat()]]


def saved(out: Path, doc: dict, stats: Stats) -> str:
    """The JSON text `card.write` keeps beside the plots."""
    return json.dumps({"version": SAVED_VERSION, "shards": fingerprint(out, doc), "stats": stats.to_json()},
                      indent=1) + "\n"  # keys in insertion order: the plots' legends follow it


def load_or_collect(out: Path, doc: dict, assets: Path, *, workers: int | None = None) -> Stats:
    """The statistics the card saved under `assets`, while the shards are the ones it read; else `collect`."""
    try:
        kept = json.loads((assets / SAVED).read_text())
        if kept.get("version") == SAVED_VERSION and kept.get("shards") == fingerprint(out, doc):
            return Stats.from_json(kept["stats"])
    except (OSError, ValueError, KeyError, TypeError):  # missing or unreadable: read the rows instead
        pass
    return collect(out, doc, workers=workers)


def shard_stats(mode: str, path: str) -> Stats:
    """The statistics of one shard, read one row group (of the columns they need) at a time."""
    stats = Stats()
    reader = pq.ParquetFile(path)
    mode_schema = schema.load(mode)
    names = set(reader.schema_arrow.names)
    image_cols = {c.name: c.source for c in mode_schema.columns if c.is_image and c.name in names}
    text_cols = [c for c in THINKING_COLUMNS if c in mode_schema.column_names and c in names]
    columns = [*text_cols, *image_cols, *(["lineage"] if "lineage" in names else [])]
    meta = reader.metadata
    stats.split_bytes[mode] += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    for group in range(reader.num_row_groups):
        table = reader.read_row_group(group, columns=columns)
        stats.rows[mode] += table.num_rows
        for col in text_cols:
            hist = stats.thinking_chars.setdefault(col, {}).setdefault(mode, Histogram())
            counts = pc.value_counts(pc.drop_null(pc.utf8_length(table.column(col))))
            for item in counts.to_pylist():
                hist.add(item["values"], item["counts"])
        for col, source in image_cols.items():  # by field: `image` and `improved_image` are both hq
            _add_image_sizes(stats, source, table.column(col))
        if "lineage" in names:
            for text in table.column("lineage").to_pylist():
                _add_lineage(stats, mode, text)
    return stats


def _add_image_sizes(stats: Stats, name: str, column: pa.ChunkedArray) -> None:
    sizes = stats.image_sizes.setdefault(name, Counter())
    for chunk in column.chunks:
        blobs = pc.struct_field(chunk, "bytes")  # null where the struct is null, too
        heads = pc.binary_slice(blobs, 0, PNG_HEADER_BYTES).to_pylist()  # no copy of whole images
        for i, head in enumerate(heads):
            if head is None:
                stats.unreadable_images += 1
                continue
            size = _png_size(head) or _header_size(blobs[i].as_py())
            if size is None:
                stats.unreadable_images += 1
            else:
                sizes[size] += 1


def _png_size(head: bytes) -> tuple[int, int] | None:
    if len(head) == PNG_HEADER_BYTES and head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    return None


def _header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of any other format, from its header (Pillow reads no pixels here)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except (OSError, SyntaxError, ValueError):  # what Pillow raises for bytes that are not an image
        return None


def _add_lineage(stats: Stats, mode: str, text: str | None) -> None:
    try:
        lineage = json.loads(text) if text else None
    except json.JSONDecodeError:
        lineage = None
    if not isinstance(lineage, dict):
        stats.unreadable_lineage += 1
        return
    for name, version in lineage.get("templates", {}).items():
        stats.templates.setdefault(name, set()).add(str(version))
    for stage, info in lineage.get("stages", {}).items():
        backend = info.get("backend") or {}
        if backend:
            stats.models.setdefault(stage, set()).add((str(backend.get("id")), str(backend.get("revision"))))
        if TEMPLATE_KEY in info:
            stats.templates.setdefault(stage, set()).add(str(info[TEMPLATE_KEY]))
        if isinstance(info.get("outcome"), str):
            stats.outcomes.setdefault(stage, {}).setdefault(mode, Counter())[info["outcome"]] += 1


# ----------------------------------------------------------------------------- plots


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # No Software/date chunks: the same data gives the same bytes.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.figure import Figure  # the object API: no pyplot global state, no display needed

    fig = Figure(figsize=(width, height), layout="constrained")  # fits labels without a second draw
    return fig, fig.subplots(1, ncols)


def plots(doc: dict, stats: Stats | None) -> dict[str, bytes]:
    """PNG bytes by file name; a plot is left out when there is nothing to draw."""
    out = {"counts.png": _plot_counts(doc), "accept_rate.png": _plot_accept_rate(doc)}
    if doc.get("checker"):
        out["checker.png"] = _plot_checker(doc["checker"])
    if stats is not None:
        for name, draw in ROW_PLOTS.items():
            png = draw(stats)
            if png is not None:
                out[name] = png
    out.update(quality_figures.plots(doc.get("quality")))  # score histograms per mode, accept rate per check
    return out


def _short(mode: str) -> str:
    return schema.load(mode).short


def _plot_counts(doc: dict) -> bytes:
    modes = list(doc["modes"])
    fig, ax = _figure(6, 0.45 * len(modes) + 1)
    accepted = [doc["modes"][m]["accepted"] for m in modes]
    rejected = [doc["modes"][m]["rejected"] for m in modes]
    names = [_short(m) for m in modes]
    ax.barh(names, accepted, color="#3b7d3b", label="accepted")
    ax.barh(names, rejected, left=accepted, color="#c0504d", label="rejected")
    ax.invert_yaxis()
    ax.set_xlabel("samples (sourced = accepted + rejected)")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _plot_accept_rate(doc: dict) -> bytes:
    stages = stage_order(doc)
    fig, ax = _figure(6, 3)
    for mode, entry in doc["modes"].items():
        passed = {s: p for s, _, p in funnel(entry)}
        alive, left = entry["sourced"], [1.0]
        for stage in stages:  # a stage the mode does not run lets every sample through
            alive = passed.get(stage, alive)
            left.append(alive / entry["sourced"] if entry["sourced"] else 0.0)
        ax.plot(range(len(left)), left, marker="o", label=_short(mode))
    ax.set_xticks(range(len(stages) + 1), ["sourced", *stages], rotation=20, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction still in")
    ax.set_title("Samples left after each stage", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def _plot_checker(checker: dict) -> bytes:
    fig, ax = _figure(4, 2.6)
    labels = ["accuracy", "mean score"]
    initial = [checker["initial_accuracy"], checker["initial_score"]]
    improved = [checker["improved_accuracy"], checker["improved_score"]]
    ax.bar([0, 1], initial, width=0.38, color="#999999", label="initial image")
    ax.bar([0.4, 1.4], improved, width=0.38, color="#3b7d3b", label="improved image")
    ax.set_xticks([0.2, 1.2], labels)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Checker over {checker['samples']} samples", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def _plot_histograms(hists: dict[str, Histogram], xlabel: str, bins: int = 30) -> bytes:
    """Step histograms on shared bins, redrawn from the fixed-width bins (no values are kept)."""
    import numpy as np

    lo = min(h.quantile(0.0) for h in hists.values())
    hi = max(h.quantile(1.0) + h.width for h in hists.values())
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = _figure(6, 2.8)
    for label, hist in hists.items():
        bins_in_order = sorted(hist.counts)
        ax.hist([i * hist.width for i in bins_in_order], bins=edges, weights=[hist.counts[i] for i in bins_in_order],
                histtype="step", linewidth=1.4,
                label=f"{label} ({hist.total})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.legend(fontsize=7)
    return _png(fig)


def _plot_thinking(stats: Stats) -> bytes | None:
    hists = {f"{col} · {_short(mode)}": hist for col, by_mode in stats.thinking_chars.items()
             for mode, hist in by_mode.items() if hist.total}
    return _plot_histograms(hists, "characters per thinking") if hists else None


def _plot_image_sizes(stats: Stats) -> bytes | None:
    if not any(stats.image_sizes.values()):
        return None
    fig, ax = _figure(4.5, 3.2)
    for col, sizes in stats.image_sizes.items():
        if not sizes:
            continue
        largest = max(sizes.values())
        ax.scatter([w for w, _ in sizes], [h for _, h in sizes], s=[20 + 80 * n / largest for n in sizes.values()],
                   alpha=0.6, label=col)
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.legend(fontsize=7)
    return _png(fig)


ROW_PLOTS = {"thinking_lengths.png": _plot_thinking, "image_sizes.png": _plot_image_sizes}
