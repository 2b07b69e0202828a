"""Rows of the mode shards, mixed by weight, in a seeded and resumable order.

Source: a dataset folder (`<dir>/data/<mode_key>/*.parquet`) or a Hugging Face Hub dataset id
with the same layout, read through `huggingface_hub.HfFileSystem` (one row group at a time, so
nothing is downloaded whole).

Order. Every mode has its own epochs. Epoch `e` of a mode is a seeded permutation of its rows
that visits row groups in a shuffled order and the rows of each group in a shuffled order, so a
reader holds one row group at a time. The epoch is cut into `num_streams` contiguous parts
(streams = ranks × data-loader workers): every row of an epoch goes to exactly one stream, and a
stream touches few row groups. A stream picks the mode of its next row at random in proportion
to the weights, from a generator seeded by (seed, stream, draw number). The whole order is thus
a function of the seed and a small state — a draw counter and, per mode, (epoch, position) —
which checkpoints save.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import fsspec
import numpy as np
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from curation.core.schema import MODE_KEYS


class DataSourceError(ValueError):
    """The data cannot serve the requested modes (missing mode, no shards, too few rows)."""


def hub_filesystem() -> fsspec.AbstractFileSystem:
    from huggingface_hub import HfFileSystem

    return HfFileSystem()


def open_data(data: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """A local dataset folder, or else a Hub dataset id (`org/name` or `org/name@revision`)."""
    if not data:
        raise DataSourceError("data= is empty: give a dataset folder or a Hub dataset id")
    path = Path(data).expanduser()
    if path.is_dir():
        return LocalFileSystem(), str(path.resolve())
    if path.is_absolute() or data.startswith(".") or path.exists():
        raise DataSourceError(f"data={data}: not a dataset folder")
    return hub_filesystem(), f"datasets/{data}"


@dataclass(frozen=True)
class RowGroup:
    path: str
    index: int
    rows: int


class ModeShards:
    """The row groups of one mode, addressed by a global row number."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, mode: str):
        self.fs = fs
        self.mode = mode
        paths = sorted(fs.glob(f"{root}/data/{mode}/*.parquet"))
        if not paths:
            raise DataSourceError(f"{root}: no shards for mode {mode} (expected data/{mode}/*.parquet)")
        self.groups: list[RowGroup] = []
        for path in paths:
            with fs.open(path, "rb") as f:
                meta = pq.ParquetFile(f).metadata
            self.groups += [RowGroup(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
        self.starts = np.cumsum([0] + [g.rows for g in self.groups])
        self.num_rows = int(self.starts[-1])
        self._cached: tuple[int, Any] | None = None  # (group number, its table): rows come grouped

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([seed, MODE_KEYS.index(self.mode), epoch])
        parts = [self.starts[g] + rng.permutation(self.groups[g].rows) for g in rng.permutation(len(self.groups))]
        return np.concatenate(parts).astype(np.int64)

    def read(self, row: int) -> dict[str, Any]:
        group = int(np.searchsorted(self.starts, row, side="right")) - 1
        if self._cached is None or self._cached[0] != group:
            info = self.groups[group]
            with self.fs.open(info.path, "rb") as f:
                self._cached = (group, pq.ParquetFile(f).read_row_group(info.index))
        return self._cached[1].slice(row - int(self.starts[group]), 1).to_pylist()[0]


def index_modes(data: str, modes: Mapping[str, float]) -> dict[str, ModeShards]:
    fs, root = open_data(data)
    return {mode: ModeShards(fs, root, mode) for mode in modes}


@dataclass(frozen=True)
class Drawn:
    """One row and where it sits in the order; `state` resumes the stream right after it."""

    mode: str
    epoch: int
    position: int  # within this stream's part of the epoch
    row: dict[str, Any]
    state: dict

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.mode, self.epoch, self.row["sample_id"])


class MixedStream:
    """The rows of one stream (one rank's one worker), forever, mode by mode as the weights say."""

    def __init__(self, shards: Mapping[str, ModeShards], weights: Mapping[str, float], *, seed: int,
                 stream: int, num_streams: int, state: dict | None = None):
        self.shards = shards
        self.seed = seed
        self.stream = stream
        self.num_streams = num_streams
        # A mode whose rows are fewer than the streams leaves some streams without a part: those
        # streams never draw it (its rows still go to exactly one stream each).
        self.modes = [m for m in MODE_KEYS if weights.get(m, 0) > 0 and self._part_size(m) > 0]
        if not self.modes:
            raise DataSourceError(f"stream {stream} of {num_streams} has no rows: each mode has fewer rows "
                                  f"({ {m: s.num_rows for m, s in shards.items()} }) than there are streams")
        total = sum(weights[m] for m in self.modes)
        self.probs = np.array([weights[m] / total for m in self.modes])
        self.state = copy.deepcopy(state) if state else {"draws": 0, "cursor": {}}
        for mode in self.modes:  # a mode added to the mix on resume starts at its first epoch
            self.state["cursor"].setdefault(mode, [0, 0])
        self._parts: dict[str, tuple[int, np.ndarray]] = {}

    def _part_size(self, mode: str) -> int:
        return len(np.array_split(np.arange(self.shards[mode].num_rows), self.num_streams)[self.stream])

    def _part(self, mode: str, epoch: int) -> np.ndarray:
        cached = self._parts.get(mode)
        if cached is None or cached[0] != epoch:
            order = self.shards[mode].epoch_order(self.seed, epoch)
            cached = (epoch, np.array_split(order, self.num_streams)[self.stream])
            self._parts[mode] = cached
        return cached[1]

    def __iter__(self) -> Iterator[Drawn]:
        while True:
            rng = np.random.default_rng([self.seed, self.stream, self.state["draws"]])
            mode = self.modes[int(rng.choice(len(self.modes), p=self.probs))]
            epoch, position = self.state["cursor"][mode]
            part = self._part(mode, epoch)
            row = self.shards[mode].read(int(part[position]))
            position += 1
            self.state["draws"] += 1
            self.state["cursor"][mode] = [epoch + 1, 0] if position == len(part) else [epoch, position]
            yield Drawn(mode, epoch, position - 1, row, copy.deepcopy(self.state))


def mode_weights(stages: Mapping, stage: int, modes: Mapping[str, float] | None) -> dict[str, float]:
    """The stage's preset mix (IRGL.md), or `modes` when given; weight 0 leaves a mode out."""
    mix = dict(modes) if modes is not None else dict(stages[str(stage)]["modes"])
    unknown = sorted(set(mix) - set(MODE_KEYS))
    if unknown:
        raise DataSourceError(f"unknown mode keys in the mix: {', '.join(unknown)}")
    chosen = {m: float(w) for m, w in mix.items() if float(w) > 0}
    if not chosen:
        raise DataSourceError("the mode mix gives every mode weight 0")
    return chosen
