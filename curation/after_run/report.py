"""`python -m curation.report data=<dataset dir> [out=<folder>]`: a static HTML report to look at.

For the person deciding whether the data is worth GPU-weeks: per mode, a sample of trajectories
(prompt → initial thinking → initial image → improving thinking → improved image, in the mode's
training order), the rejects grouped by reason with examples, and the run's figures (the same
ones as the card). It reads only the dataset folder and writes plain files: open `index.html`
from disk, no server.

Bounded by design, so its size and time stay flat from 500 rows to IRGL-300K:
- it shows `rows_per_mode` trajectories per mode, a stable seeded sample chosen by sample id
  (the rows whose `sha256(seed:sample_id)` are smallest: the same sample ids are shown in every
  mode and by every run, whatever the shard order), and `reject_examples` rows per reject
  reason, chosen the same way; the index says how many rows it shows out of how many;
- images are written only for the rows shown: a thumbnail that loads lazily and links to the
  full-size file, each named by its content hash, so a re-run skips the work and images shared by
  modes exist once;
- the figures cover every row: one streaming pass with bounded memory (`figures.collect`), or
  the card's own pass, saved beside its plots, while the shards are the ones it read.

Text from the data (prompts, thinkings, lineage) is untrusted: templates autoescape everything,
and pages forbid scripts outright.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import io
import json
import shutil
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import jinja2
import pyarrow.parquet as pq
from omegaconf import DictConfig
from PIL import Image

from curation.core import schema
from curation.core.cpus import usable_cpus
from curation.core.files import write_atomic
from curation.writer import card, figures, manifest

TEMPLATES = Path(__file__).resolve().parent / "report_templates"
USAGE = """usage: python -m curation.report data=<dataset dir> [out=<folder>] [rows_per_mode=50] [seed=0]
                                       [reject_examples=5] [page_size=50] [thumb_px=192] [workers=0]
  writes <out>/index.html (default out: <data>/report) and prints its path; open it in a browser."""
#: Below this many images to show, spawning worker processes (~2 s) costs more than the thumbnails (~3 ms each).
PARALLEL_IMAGES = 2000
READ_THREADS = 4  # row groups read at once when fetching the rows a report shows
# File signatures: the extension of a full-size image comes from its bytes, never from the data's `path`.
SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"), (b"GIF8", "gif"))


@dataclass(frozen=True)
class Settings:
    rows_per_mode: int
    seed: int
    reject_examples: int
    page_size: int
    thumb_px: int
    workers: int  # 0: one per CPU where it pays off

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "Settings":
        settings = cls(rows_per_mode=int(cfg.rows_per_mode), seed=int(cfg.seed),
                       reject_examples=int(cfg.reject_examples), page_size=int(cfg.page_size),
                       thumb_px=int(cfg.thumb_px), workers=int(cfg.workers))
        for name in ("rows_per_mode", "page_size", "thumb_px"):
            if getattr(settings, name) < 1:
                raise ValueError(f"{name}={getattr(settings, name)}: give a positive number")
        if settings.reject_examples < 0 or settings.workers < 0:
            raise ValueError("reject_examples and workers are counts: give 0 or more")
        return settings


# ----------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageView:
    full: str  # paths relative to the report folder
    thumb: str
    width: int = 0
    height: int = 0
    error: str = ""  # why the image could not be shown (it does not decode)


def _extension(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((ext for magic, ext in SIGNATURES if data.startswith(magic)), "bin")


def make_image(root: str, data: bytes, thumb_px: int) -> ImageView:
    """Write the full-size file and a JPEG thumbnail, unless a previous run already did."""
    sha = hashlib.sha256(data).hexdigest()
    full = f"images/{sha[:2]}/{sha}.{_extension(data)}"
    thumb = f"thumbs/{sha[:2]}/{sha}-{thumb_px}.jpg"
    out = Path(root)
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if not (out / thumb).is_file():
                img.load()
                small = img.convert("RGB")
                small.thumbnail((thumb_px, thumb_px))
                buf = io.BytesIO()
                small.save(buf, format="JPEG", quality=82)
                write_atomic(out / thumb, buf.getvalue())
    except Exception as exc:  # Pillow raises OSError, SyntaxError, DecompressionBombError… for bad bytes
        return ImageView(full="", thumb="", error=f"does not decode ({type(exc).__name__}: {exc})")
    if not (out / full).is_file():
        write_atomic(out / full, data)
    return ImageView(full=full, thumb=thumb, width=width, height=height)


class Images:
    """Thumbnails and full-size files for one page at a time, made in worker processes."""

    def __init__(self, out: Path, thumb_px: int, workers: int):
        self.out, self.thumb_px = out, thumb_px
        self.done: dict[str, ImageView] = {}  # by sha256 of the bytes: modes share images
        self.pool = (ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None)

    def views(self, blobs: list[bytes]) -> list[ImageView]:
        keys = [hashlib.sha256(b).hexdigest() for b in blobs]
        todo = {k: b for k, b in zip(keys, blobs, strict=True) if k not in self.done}
        root = str(self.out)
        if self.pool is None:
            made = [make_image(root, b, self.thumb_px) for b in todo.values()]
        else:
            made = list(self.pool.map(make_image, repeat(root), todo.values(), repeat(self.thumb_px)))
        self.done.update(zip(todo, made, strict=True))
        return [self.done[k] for k in keys]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


# ----------------------------------------------------------------------------- rows → trajectories


@dataclass
class Segment:
    column: str
    label: str
    kind: str  # "text" | "image"
    turn: str
    loss: bool
    text: str | None = None
    image: ImageView | None = None
    missing: bool = False  # the shard has no such column, or the row no value


@dataclass
class Trajectory:
    number: int  # 1-based position in the mode
    sample_id: str
    source_id: str
    segments: list[Segment]
    stages: list[tuple[str, str, str]]  # (stage, backend id, notes)
    lineage_json: str


def _label(col: schema.Column) -> str:
    label = col.name.replace("_", " ")
    return f"{label} (high-quality)" if col.source == "hq_image" and "improved" not in col.name else label


def _notes(info: dict) -> str:
    """One line per stage from its lineage: attempts, defects, tokens … (keys vary by backend)."""
    parts = []
    for key, value in sorted(info.items()):
        if key in ("backend", "key", "seed"):
            continue
        if isinstance(value, list):
            kinds = [v.get("kind", "?") if isinstance(v, dict) else str(v) for v in value]
            parts.append(f"{key}: {', '.join(kinds) if kinds else 'none'}")
        elif not isinstance(value, dict):
            parts.append(f"{key}: {value}")
    return " · ".join(parts)


def _stages(lineage: dict) -> list[tuple[str, str, str]]:
    return [(stage, str((info.get("backend") or {}).get("id", "")), _notes(info))
            for stage, info in lineage.get("stages", {}).items()]


# ----------------------------------------------------------------------------- the sample


def sample_key(seed: int, sample_id: str) -> int:
    """Where a sample id falls in the report's order: a hash, so neither file order nor id order matters."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()[:8], "big")


class Smallest:
    """The `k` items of smallest key seen so far, in one pass and O(k) memory."""

    def __init__(self, k: int):
        self.k, self.seen = k, 0
        self.heap: list[tuple[int, int, Any]] = []  # a max-heap by key (negated) of at most k entries

    def offer(self, key: int, item: Any) -> None:
        self.seen += 1  # breaks ties of equal keys by arrival, never by comparing items
        entry = (-key, -self.seen, item)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, entry)
        elif self.k and entry[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, entry)

    def items(self) -> list[Any]:
        return [item for _, _, item in sorted(self.heap, key=lambda e: (-e[0], -e[1]))]


@dataclass(frozen=True)
class RowAt:
    sample_id: str
    file: str
    group: int
    row: int


def choose_rows(data: Path, mode: str, settings: Settings, wanted_prompts: set[str],
                prompts: dict[str, str]) -> tuple[list[RowAt], int]:
    """The mode's sample (in hash order) and its row count, reading only `sample_id` (and `prompt`, to
    find the prompts of the reject examples in `wanted_prompts`) one row group at a time."""
    chosen, rows = Smallest(settings.rows_per_mode), 0
    for path in sorted((data / "data" / mode).glob("*.parquet")):
        reader = pq.ParquetFile(path)
        columns = [c for c in ("sample_id", "prompt") if c in reader.schema_arrow.names
                   and (c == "sample_id" or wanted_prompts)]
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group, columns=columns)
            ids = table.column("sample_id").to_pylist()
            for i, sample_id in enumerate(ids):
                chosen.offer(sample_key(settings.seed, str(sample_id)), RowAt(str(sample_id), str(path), group, i))
            if wanted_prompts and "prompt" in columns:
                for sample_id, prompt in zip(ids, table.column("prompt").to_pylist(), strict=True):
                    if sample_id in wanted_prompts and isinstance(prompt, str):
                        prompts.setdefault(sample_id, prompt)
            rows += table.num_rows
    return chosen.items(), rows


def read_rows(mode: str, at: list[RowAt]) -> list[dict]:
    """The chosen rows, in the order given, reading only the row groups that hold them."""
    wanted = schema.load(mode).column_names
    by_group: dict[tuple[str, int], list[int]] = {}
    for r in at:
        by_group.setdefault((r.file, r.group), []).append(r.row)
    local = threading.local()  # a ParquetFile must not be read from two threads at once: one per thread

    def read(key: tuple[str, int]) -> list[dict]:
        (file, group), indices = key, by_group[key]
        readers = local.__dict__.setdefault("readers", {})
        reader = readers.get(file) or readers.setdefault(file, pq.ParquetFile(file))  # footer parsed once
        columns = [c for c in wanted if c in reader.schema_arrow.names]
        return reader.read_row_group(group, columns=columns, use_threads=False).take(indices).to_pylist()

    # The chosen rows are scattered over up to rows_per_mode row groups, each read whole (images
    # are most of it): reading and decompressing release the GIL, so a few threads overlap them.
    found: dict[tuple[str, int, int], dict] = {}
    keys = sorted(by_group)
    with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="report-read") as pool:
        for key, rows in zip(keys, pool.map(read, keys), strict=True):
            found.update(((*key, i), row) for i, row in zip(by_group[key], rows, strict=True))
    return [found[(r.file, r.group, r.row)] for r in at]


def trajectories(rows: list[dict], first: int, mode_schema: schema.ModeSchema, images: Images) -> list[Trajectory]:
    by_name = {c.name: c for c in mode_schema.columns}
    blobs = [row[s.column]["bytes"] for row in rows for s in mode_schema.sequence
             if by_name[s.column].is_image and (row.get(s.column) or {}).get("bytes") is not None]
    views = iter(images.views(blobs))
    out = []
    for i, row in enumerate(rows):
        segments = []
        for seg in mode_schema.sequence:
            col = by_name[seg.column]
            s = Segment(seg.column, _label(col), "image" if col.is_image else "text", seg.turn, seg.loss)
            value = row.get(seg.column)
            if col.is_image and (value or {}).get("bytes") is not None:
                s.image = next(views)
            elif not col.is_image and value is not None:
                s.text = value
            else:
                s.missing = True
            segments.append(s)
        lineage = _parse_lineage(row.get("lineage"))
        out.append(Trajectory(first + i, str(row.get("sample_id")), str(row.get("source_id")), segments,
                              _stages(lineage), json.dumps(lineage, indent=1, ensure_ascii=False)))
    return out


def _parse_lineage(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"unparsable lineage": text}
    return value if isinstance(value, dict) else {"lineage": value}


# ----------------------------------------------------------------------------- pages


def environment() -> jinja2.Environment:
    # autoescape=True for every template (their names end in .j2, which select_autoescape would miss).
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@dataclass
class ModePages:
    mode: str
    short: str
    rows: int = 0  # rows of the mode
    shown: int = 0  # rows of the sample
    pages: list[tuple[str, str, str]] = field(default_factory=list)  # (file, first sample id, last sample id)


def page_name(number: int) -> str:
    return f"page-{number:05d}.html"


def write_mode(data: Path, out: Path, mode: str, env: jinja2.Environment, images: Images, settings: Settings,
               wanted_prompts: set[str], prompts: dict[str, str]) -> ModePages:
    mode_schema = schema.load(mode)
    at, rows = choose_rows(data, mode, settings, wanted_prompts, prompts)
    result = ModePages(mode, mode_schema.short, rows=rows, shown=len(at))
    chunks = [at[i:i + settings.page_size] for i in range(0, len(at), settings.page_size)] or [[]]
    template = env.get_template("mode_page.html.j2")
    (out / mode).mkdir(parents=True, exist_ok=True)
    for number, chunk in enumerate(chunks, start=1):
        first = (number - 1) * settings.page_size + 1
        items = trajectories(read_rows(mode, chunk), first, mode_schema, images)
        html = template.render(root="../", mode=mode, mode_schema=mode_schema, page=number, pages=len(chunks),
                               page_name=page_name, trajectories=items, first=first, shown=len(at), rows=rows)
        write_atomic(out / mode / page_name(number), html)
        first_id, last_id = (items[0].sample_id, items[-1].sample_id) if items else ("", "")
        result.pages.append((page_name(number), first_id, last_id))
    for stale in (out / mode).glob("page-*.html"):  # pages of an earlier, larger report
        if stale.name not in {name for name, _, _ in result.pages}:
            stale.unlink()
    return result


@dataclass
class RejectGroup:
    reason: str  # stage/reason
    count: int
    modes: dict[str, int]
    examples: list[dict]


def reject_groups(data: Path, settings: Settings, batch_rows: int = 65536) -> list[RejectGroup]:
    """Counts of every reason over every reject, and `reject_examples` examples of each, chosen like the
    trajectories (by hash of the sample id); the rejects file is read in batches."""
    path = data / "rejects" / "rejects.parquet"
    if not path.is_file():
        return []
    groups: dict[str, RejectGroup] = {}
    examples: dict[str, Smallest] = {}
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            key = f"{row['stage']}/{row['reason']}"
            group = groups.setdefault(key, RejectGroup(key, 0, {}, []))
            group.count += 1
            group.modes[row["mode"]] = group.modes.get(row["mode"], 0) + 1
            chosen = examples.setdefault(key, Smallest(settings.reject_examples))
            chosen.offer(sample_key(settings.seed, f"{row['mode']}:{row['sample_id']}"), row)
    for key, group in groups.items():
        group.examples = examples[key].items()
    return sorted(groups.values(), key=lambda g: (-g.count, g.reason))


def build(data: Path, out: Path, settings: Settings) -> Path:
    data, out = Path(data), Path(out)
    doc = manifest.read(data)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    shutil.copyfile(TEMPLATES / "report.css", out / "report.css")
    stats = figures.load_or_collect(data, doc, data / card.ASSETS, workers=settings.workers or None)
    pngs = {name: base64.b64encode(png).decode("ascii") for name, png in figures.plots(doc, stats).items()}
    groups = reject_groups(data, settings)
    wanted_prompts = {str(r["sample_id"]) for g in groups for r in g.examples}
    prompts: dict[str, str] = {}
    shown_images = settings.rows_per_mode * sum(
        sum(c.is_image for c in schema.load(m).columns) for m in doc["modes"])
    workers = settings.workers or (usable_cpus() if shown_images >= PARALLEL_IMAGES else 1)
    images = Images(out, settings.thumb_px, workers)
    try:
        modes = [write_mode(data, out, mode, env, images, settings, wanted_prompts, prompts) for mode in doc["modes"]]
    finally:
        images.close()
    for group in groups:
        group.examples = [{**r, "prompt": prompts.get(str(r["sample_id"]), "")} for r in group.examples]
    write_atomic(out / "rejects.html", env.get_template("rejects.html.j2").render(
        root="", groups=groups, total=sum(g.count for g in groups)))
    offline = any(str(b.get("id", "")).startswith(card.OFFLINE_PREFIX) for b in doc["backends"].values())
    index = env.get_template("index.html.j2").render(
        root="", doc=doc, modes=modes, figures=pngs, stats=stats, offline=offline, groups=groups,
        rates={m: {s: f"{p / e:.1%}" if e else "—" for s, e, p in figures.funnel(entry)}
               for m, entry in doc["modes"].items()},
        stages=figures.stage_order(doc), settings=settings,
        preference=figures.preference_rates(doc, stats), paper_preference=figures.PAPER_PREFERENCE_RATE,
        data=str(data.resolve()))
    write_atomic(out / "index.html", index)
    return out / "index.html"
