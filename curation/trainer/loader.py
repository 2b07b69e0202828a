"""Rows → plans → packed batches inside a torch DataLoader, with a state a checkpoint can save.

Each rank runs `num_workers` streams (one per data-loader worker; one stream when workers are
0). A worker yields batches that carry their stream id and the stream state right after them.
The loader keeps the state of the last *consumed* batch of every stream — prefetched batches
do not count — plus how many batches were consumed. Resuming restores every stream and rotates
workers so that the first batch comes from the stream whose turn it was: the DataLoader takes
batches from its workers round-robin, always starting at worker 0.
"""

from __future__ import annotations

import logging
from typing import Iterator, Mapping

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from curation.core import schema
from curation.trainer.dataset import MixedStream, index_modes
from curation.trainer.pack import PackedBatch, Planned, collate, pack
from curation.trainer.plan import Planner

log = logging.getLogger("curation.train")


class ResumeMismatch(ValueError):
    """A saved data state was made under another world size or worker count."""


class TrainStream(IterableDataset):
    def __init__(self, data: str, weights: Mapping[str, float], planner: Planner, *, seed: int, rank: int,
                 world_size: int, num_workers: int, max_tokens_per_sample: int, max_tokens_per_batch: int,
                 cfg_dropout: Mapping[str, float], vae_patch: int, vit_patch: int):
        super().__init__()
        if max_tokens_per_sample > max_tokens_per_batch:
            raise ValueError(f"max_tokens_per_sample {max_tokens_per_sample} exceeds "
                             f"max_tokens_per_batch {max_tokens_per_batch}")
        index_modes(data, weights)  # a missing mode or folder fails here, not inside a data-loader worker
        self.data = data
        self.weights = dict(weights)
        self.planner = planner
        self.seed = seed
        self.rank = rank
        self.streams_per_rank = max(1, num_workers)
        self.num_streams = world_size * self.streams_per_rank
        self.max_tokens_per_sample = max_tokens_per_sample
        self.max_tokens_per_batch = max_tokens_per_batch
        self.cfg_dropout = dict(cfg_dropout)
        self.vae_patch = vae_patch
        self.vit_patch = vit_patch
        self.cells_per_side = max(planner.vae.max_side // vae_patch, planner.vit.max_side // vit_patch)
        self.start_states: dict[int, dict] = {}
        self.rotation = 0

    def stream_id(self) -> int:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        return self.rank * self.streams_per_rank + (worker + self.rotation) % self.streams_per_rank

    def __iter__(self) -> Iterator[PackedBatch]:
        stream = self.stream_id()
        start = self.start_states.get(stream)
        rows = MixedStream(index_modes(self.data, self.weights), self.weights, seed=self.seed, stream=stream,
                           num_streams=self.num_streams, state=start["rows"] if start else None)
        for group in pack(self._planned(rows, start["skipped"] if start else 0), self.max_tokens_per_batch):
            yield collate(group, special=self.planner.tokenizer.special, vae_patch=self.vae_patch,
                          vit_patch=self.vit_patch, cells_per_side=self.cells_per_side,
                          dropout=self.cfg_dropout, seed=self.seed, stream=stream)

    def _planned(self, rows: MixedStream, skipped: int) -> Iterator[Planned]:
        for drawn in rows:
            plan = self.planner.plan(schema.load(drawn.mode), drawn.row)
            if plan.num_tokens > self.max_tokens_per_sample:
                skipped += 1
                log.warning("skipped %s/%s: %d tokens > max_tokens_per_sample %d (%d skipped so far in stream %d)",
                            drawn.mode, drawn.row["sample_id"], plan.num_tokens, self.max_tokens_per_sample,
                            skipped, rows.stream)
                continue
            yield Planned(plan, drawn.key, {"rows": drawn.state, "skipped": skipped})


def _as_is(batch: PackedBatch) -> PackedBatch:
    return batch  # batches are packed already; the DataLoader must not collate them again


class ResumableLoader:
    def __init__(self, stream: TrainStream, num_workers: int):
        self.stream = stream
        self.num_workers = num_workers
        self.consumed = 0
        self.states: dict[int, dict] = {}

    def __iter__(self) -> Iterator[PackedBatch]:
        loader = DataLoader(self.stream, batch_size=None, num_workers=self.num_workers, collate_fn=_as_is)
        for batch in loader:
            self.states[batch.stream] = batch.state
            self.consumed += 1
            yield batch

    @property
    def skipped(self) -> int:
        """Rows skipped as over budget, summed over this rank's streams, as of the consumed batches."""
        return sum(s["skipped"] for s in self.states.values())

    def state_dict(self) -> dict:
        return {"num_streams": self.stream.num_streams, "consumed": self.consumed,
                "streams": {int(k): v for k, v in self.states.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state["num_streams"] != self.stream.num_streams:
            raise ResumeMismatch(f"the checkpoint's data order has {state['num_streams']} streams "
                                 f"(world size × workers), this run has {self.stream.num_streams}")
        self.consumed = state["consumed"]
        self.states = dict(state["streams"])
        self.stream.start_states = dict(state["streams"])
        self.stream.rotation = self.consumed % self.stream.streams_per_rank
