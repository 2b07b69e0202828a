"""Source rows → samples, streamed: read, keep this shard's rows, pass them through the gates.

Nothing here holds the source in memory: rows flow one by one from the source's iterator into
the gates (which decode and hash images a few rows ahead in threads) and on to the executor.
A sample id is a hash of the source's identity and the row's id, so it does not depend on the
order rows are read in, on sharding, or on which machine reads them.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

from curation.backends.base import Source
from curation.pipeline.gates import Gates
from curation.core.progress import Progress

GATES = "gates"


def sample_id_for(source_identity: dict, source_id: str) -> str:
    return hashlib.sha256(f"{source_identity['id']}\0{source_id}".encode()).hexdigest()[:16]


def in_shard(sample_id: str, shard: int, num_shards: int) -> bool:
    return int(sample_id, 16) % num_shards == shard


def read_samples(source: Source, gates: Gates, limit: int, *, shard: int = 0, num_shards: int = 1,
                 workers: int = 1, progress: Progress | None = None) -> Iterator:
    """This shard's samples among the source's first `limit` rows, in source order; a row the
    gates turn away is a sample with its `reject` set (accounted for, never dropped)."""
    identity = source.identity()

    def this_shard():
        for index, item in enumerate(source.iter_items(limit)):
            sample_id = sample_id_for(identity, item.source_id)
            if in_shard(sample_id, shard, num_shards):
                yield item, sample_id, index
            elif progress is not None:
                progress.update(GATES, skipped=1)  # another shard's row: read, not ours

    for sample in gates.admit_all(this_shard(), workers=workers):
        if progress is not None:
            progress.update(GATES, computed=1, rejected=int(sample.reject is not None))
        yield sample
