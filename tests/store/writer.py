"""A writer process for the concurrent-store test: `python -m tests.store.writer URL ORDER LOG`.

It walks keys like the executor does (read the store, compute only on a miss, write the result
and its image) and logs when each computation started and when its write finished, so the test
can tell double work inside the race window from double work outside it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

from curation.pipeline.shared_store import SharedStore
from curation.core import images
from curation.core.images import ImageRef
from curation.core.records import StageOutput

KEYS = [hashlib.sha256(f"key {i}".encode()).hexdigest() for i in range(40)]
IMAGE_BYTES = 300_000  # large enough that a torn write would be seen as short


def image_for(key: str) -> tuple[bytes, ImageRef]:
    # Not a decodable image: the store keeps bytes as they are, and the caller's ref is trusted.
    data = hashlib.sha256(key.encode()).digest() * (IMAGE_BYTES // 32)
    return data, ImageRef(sha256=images.sha256(data), format="png", width=1, height=1, nbytes=len(data))


def result_for(key: str, ref: ImageRef) -> StageOutput:
    return StageOutput(fields={"text": key * 2000, "image": ref}, lineage={"key": key})


def main(url: str, order: str, log_path: str) -> None:
    store = SharedStore(url)
    keys = KEYS if order == "forward" else KEYS[::-1]
    log = []
    for key in keys:
        if store.get_result(key) is not None:
            continue
        started = time.monotonic()
        time.sleep(0.05)  # the backend call
        data, ref = image_for(key)
        store.put_image_bytes(data, ref)
        store.put_result(key, "stage", result_for(key, ref))
        log.append({"key": key, "start": started, "end": time.monotonic()})
    with open(log_path, "w") as fh:
        json.dump(log, fh)


if __name__ == "__main__":
    main(*sys.argv[1:])
