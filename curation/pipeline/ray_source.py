"""The start of the Ray pipeline: source rows, through the gates, as Ray Data blocks.

A source is a stream (a Hub dataset, a folder, a prompts file, the offline world), read in order,
so it is one read task. Ray Data streams the blocks the task yields to the walker actors as they
come, so the first model call does not wait for the whole source, and its backpressure keeps the
blocks in flight bounded.

One Ray Data row is one batch of samples, pickled into one binary cell: Ray's cost is per block
(an object in the object store, a task to schedule), and one block per batch rather than per sample
is what keeps it small next to the work. A `Sample` (with its gate reject, if any) is small once
its image is in the shared store.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from curation.pipeline.shared_store import SharedStore

# (store) -> the gated samples of this run, in source order; built by the entrypoint, pickled
# to the read task, which runs it against the shared store (the gates write source images there).
SampleReader = Callable[[SharedStore], Iterable[Any]]

SAMPLES = "samples"  # one pickled batch of samples per row


def encode_batch(items: list[Any]) -> pa.Table:
    return pa.table({SAMPLES: pa.array([pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)], type=pa.binary())})


def decode_batches(table: pa.Table) -> list[Any]:
    return [item for cell in table.column(SAMPLES).to_pylist() for item in pickle.loads(cell)]


class GatedSampleSource(Datasource):
    def __init__(self, read_samples: SampleReader, store_url: str, *, batch_size: int):
        super().__init__()
        self.read_samples = read_samples
        self.store_url = store_url
        self.batch_size = batch_size

    def estimate_inmemory_data_size(self) -> int | None:
        return None  # a stream: unknown until read

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        metadata = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [ReadTask(self._read, metadata, per_task_row_limit=per_task_row_limit)]

    def _read(self) -> Iterator[pa.Table]:
        store = SharedStore(self.store_url)
        batch: list[Any] = []
        for item in self.read_samples(store):
            batch.append(item)
            if len(batch) >= self.batch_size:
                yield encode_batch(batch)
                batch = []
        if batch:
            yield encode_batch(batch)
