"""What a built dataset's rows and manifest say, as numbers and small PNG plots.

Shared by the dataset card (`curation/card.py`) and the HTML report (`curation/report.py`):
`funnel` and `stage_order` read the manifest alone; `collect` reads the shards once for what only
the rows know (thinking lengths, image sizes, models and template versions in lineage, tokens and
backend seconds per sample); `plots` draws them.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from curation.publish import emit

from curation.core import schema
from curation.build.stages import ALL_STAGES

#: Image sizes are read from this many rows per mode: headers only, but every row's bytes are read.
IMAGE_ROWS = 2000
THINKING_COLUMNS = ("initial_thinking", "improving_thinking")
# Lineage keys a backend records per stage (teachers: tokens and latency of the accepted attempt).
TOKEN_KEYS = ("prompt_tokens", "completion_tokens")
SECONDS_KEY = "latency_s"
TEMPLATE_KEY = "template"
STAGE_ROLES = {cls.name: cls.role for cls in ALL_STAGES}


# ----------------------------------------------------------------------------- what the data says


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


@dataclass
class Cost:
    """Backend tokens and seconds over the accepted rows of a mode that recorded them."""

    rows: int = 0
    token_rows: int = 0
    tokens: float = 0.0
    second_rows: int = 0
    seconds: float = 0.0

    def per_row(self, what: str) -> float | None:
        rows = self.token_rows if what == "tokens" else self.second_rows
        return getattr(self, what) / rows if rows else None


@dataclass
class Stats:
    """What the rows say, beyond the manifest's counts."""

    thinking_chars: dict[str, list[int]] = field(default_factory=dict)  # column -> lengths, one per sample
    image_sizes: dict[str, Counter] = field(default_factory=dict)  # field -> Counter[(w, h)], one per image
    image_rows: int = IMAGE_ROWS
    unreadable_images: int = 0  # `curation.publish.validate` names them; stats only count them
    unreadable_lineage: int = 0
    cost: dict[str, Cost] = field(default_factory=dict)  # by mode
    models: dict[str, set] = field(default_factory=dict)  # stage -> {(id, revision)}
    templates: dict[str, set] = field(default_factory=dict)  # template name -> {versions}


def collect(out: Path, doc: dict, *, image_rows: int = IMAGE_ROWS) -> Stats:
    stats = Stats(image_rows=image_rows)
    seen_text: set[tuple[str, str]] = set()  # modes share samples: count each thinking once
    seen_images: set[str] = set()
    for mode in doc["modes"]:
        mode_schema = schema.load(mode)
        image_cols = {c.name: c.source for c in mode_schema.columns if c.is_image}  # column -> field
        text_cols = [c for c in THINKING_COLUMNS if c in mode_schema.column_names]
        rows_read = 0
        for path in sorted((out / "data" / mode).glob("train-*.parquet")):
            reader = pq.ParquetFile(path)
            for group in range(reader.num_row_groups):
                want_images = rows_read < image_rows
                cols = ["sample_id", "lineage", *text_cols, *(image_cols if want_images else [])]
                for row in reader.read_row_group(group, columns=cols).to_pylist():
                    for col in text_cols:
                        if isinstance(row[col], str) and (col, row["sample_id"]) not in seen_text:
                            seen_text.add((col, row["sample_id"]))
                            stats.thinking_chars.setdefault(col, []).append(len(row[col]))
                    if want_images:
                        for col, source in image_cols.items():  # by field: `image` and `improved_image` are both hq
                            _add_image_size(stats, seen_images, source, row[col])
                    _add_lineage(stats, mode, row["lineage"])
                rows_read += reader.metadata.row_group(group).num_rows
    return stats


def _add_image_size(stats: Stats, seen: set[str], col: str, value: dict | None) -> None:
    if value is None or value.get("bytes") is None:
        stats.unreadable_images += 1
        return
    key = value.get("path") or str(hash(value["bytes"]))
    if key in seen:
        return
    seen.add(key)
    try:
        with Image.open(io.BytesIO(value["bytes"])) as img:  # reads the header only
            size = img.size
    except (OSError, SyntaxError, ValueError):  # what Pillow raises for bytes that are not an image
        stats.unreadable_images += 1
        return
    stats.image_sizes.setdefault(col, Counter())[size] += 1


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
    tokens, seconds = [], []
    for stage, info in lineage.get("stages", {}).items():
        backend = info.get("backend") or {}
        if backend:
            stats.models.setdefault(stage, set()).add((str(backend.get("id")), str(backend.get("revision"))))
        if TEMPLATE_KEY in info:
            stats.templates.setdefault(stage, set()).add(str(info[TEMPLATE_KEY]))
        tokens += [info[k] for k in TOKEN_KEYS if isinstance(info.get(k), (int, float))]
        if isinstance(info.get(SECONDS_KEY), (int, float)):
            seconds.append(info[SECONDS_KEY])
    if tokens or seconds:
        cost = stats.cost.setdefault(mode, Cost())
        cost.rows += 1
        if tokens:
            cost.token_rows += 1
            cost.tokens += sum(tokens)
        if seconds:
            cost.second_rows += 1
            cost.seconds += sum(seconds)


def stage_order(doc: dict) -> list[str]:
    """Every stage of any mode's funnel, in data-flow order."""
    canonical = ["gates", *STAGE_ROLES, emit.VALIDATE]
    found = {s for entry in doc["modes"].values() for s, _, _ in funnel(entry)}
    return sorted(found - set(canonical)) + [s for s in canonical if s in found]


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
    if stats is not None and stats.thinking_chars:
        out["thinking_lengths.png"] = _plot_thinking(stats)
    if stats is not None and stats.image_sizes:
        out["image_sizes.png"] = _plot_image_sizes(stats)
    if stats is not None and stats.cost:
        out["cost.png"] = _plot_cost(stats)
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


def _plot_thinking(stats: Stats) -> bytes:
    fig, ax = _figure(6, 2.8)
    for col, lengths in stats.thinking_chars.items():
        ax.hist(lengths, bins=30, alpha=0.6, label=f"{col} ({len(lengths)})")
    ax.set_xlabel("characters")
    ax.set_ylabel("samples")
    ax.legend(fontsize=7)
    return _png(fig)


def _plot_image_sizes(stats: Stats) -> bytes:
    fig, ax = _figure(4.5, 3.2)
    for col, sizes in stats.image_sizes.items():
        largest = max(sizes.values())
        ax.scatter([w for w, _ in sizes], [h for _, h in sizes], s=[20 + 80 * n / largest for n in sizes.values()],
                   alpha=0.6, label=col)
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.legend(fontsize=7)
    return _png(fig)


def _plot_cost(stats: Stats) -> bytes:
    fig, (left, right) = _figure(7, 2.6, ncols=2)
    modes = list(stats.cost)
    names = [_short(m) for m in modes]
    left.barh(names, [stats.cost[m].per_row("tokens") or 0 for m in modes], color="#4f81bd")
    left.set_xlabel("tokens per accepted sample")
    right.barh(names, [stats.cost[m].per_row("seconds") or 0 for m in modes], color="#f79646")
    right.set_xlabel("backend seconds per accepted sample")
    right.set_yticks([])
    left.invert_yaxis()
    right.invert_yaxis()
    return _png(fig)
