"""The start of the Ray pipeline: source rows, through the gates, as Ray Data blocks.

A source is a stream (a Hub dataset, a folder, a prompts file, the offline world), read in order,
so it is one read task. Ray Data streams the blocks the task yields to the walker actors as they
come, so the first model call does not wait for the whole source, and its backpressure keeps the
blocks in flight bounded. Rows travel pickled in one binary column: a `Sample` (with its gate
reject, if any) is small once its image is in the shared store.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from curation.build.shared_store import SharedStore

# (store) -> the gated samples of this run, in source order; built by the entrypoint, pickled
# to the read task, which runs it against the shared store (the gates write source images there).
SampleReader = Callable[[SharedStore], Iterable[Any]]

ITEM = "item"  # the pickled sample column


def encode_rows(items: Iterable[Any]) -> pa.Table:
    return pa.table({ITEM: pa.array([pickle.dumps(i, protocol=pickle.HIGHEST_PROTOCOL) for i in items],
                                    type=pa.binary())})


def decode_rows(table: pa.Table) -> list[Any]:
    return [pickle.loads(v) for v in table.column(ITEM).to_pylist()]


class GatedSampleSource(Datasource):
    def __init__(self, read_samples: SampleReader, store_url: str, *, block_rows: int):
        super().__init__()
        self.read_samples = read_samples
        self.store_url = store_url
        self.block_rows = block_rows

    def estimate_inmemory_data_size(self) -> int | None:
        return None  # a stream: unknown until read

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        metadata = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [ReadTask(self._read, metadata, per_task_row_limit=per_task_row_limit)]

    def _read(self) -> Iterator[pa.Table]:
        store = SharedStore(self.store_url)
        block: list[Any] = []
        for item in self.read_samples(store):
            block.append(item)
            if len(block) >= self.block_rows:
                yield encode_rows(block)
                block = []
        if block:
            yield encode_rows(block)
