"""The stage contract.

A stage declares the fields it needs and makes and the backend role it calls. Its `key` is the
hash of exactly what determines its result: its name and version, its inputs (images by content
hash), its backend's identity (model, revision, settings), its own settings and its seed. Same
key, same result: the executor never computes a key twice.

`run` returns a `StageOutput` or a `Reject`. It never returns None for "failed" and never raises
for a bad sample; it raises only when the run itself is broken (server gone, disk full).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

from curation.core import images
from curation.backends.base import Backend, ImageInput
from curation.core.images import ImageRef
from curation.core.records import Reject, StageOutput
from curation.pipeline.store import Store


def derive_seed(run_seed: int, sample_id: str, stage: str) -> int:
    """A per-sample, per-stage seed: independent of sharding, recorded in lineage."""
    digest = hashlib.sha256(f"{run_seed}:{sample_id}:{stage}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _key_value(value: Any) -> Any:
    if isinstance(value, ImageRef):
        return {"image_sha256": value.sha256}
    return value


@dataclass
class StageContext:
    """What a stage may use while it runs one sample."""

    backend: Backend | None
    store: Store
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)

    async def load_image(self, ref: ImageRef) -> Image.Image:
        data = self.store.image_bytes(ref)
        return await asyncio.to_thread(images.decode, data)

    async def load_image_input(self, ref: ImageRef) -> ImageInput:
        """The stored bytes and their ref, not decoded: a teacher decodes only if it needs pixels."""
        return ImageInput(self.store.image_bytes(ref), ref)

    async def save_image(self, image: bytes | Image.Image, fmt: str = "png", png_compress_level: int = 6) -> ImageRef:
        """Store an image: server bytes are kept as they are; PIL images are encoded once here."""

        def _encode_and_put() -> ImageRef:
            data = image if isinstance(image, bytes) else images.encode(image, fmt, png_compress_level=png_compress_level)
            return self.store.put_image_bytes(data)

        return await asyncio.to_thread(_encode_and_put)


class Stage(ABC):
    name: ClassVar[str]
    #: Bump when the stage's own logic changes what it produces: old results stop matching.
    version: ClassVar[int] = 1
    needs: ClassVar[tuple[str, ...]]
    makes: ClassVar[tuple[str, ...]]
    #: The config group of the backend it calls (None: pure computation).
    role: ClassVar[str | None]

    def key(self, inputs: dict[str, Any], backend_identity: dict | None, seed: int, settings: dict) -> str:
        payload = {
            "stage": self.name,
            "version": self.version,
            "inputs": {k: _key_value(inputs[k]) for k in sorted(inputs)},
            "backend": backend_identity,
            "seed": seed,
            "settings": settings,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def reject(self, reason: str, detail: str = "", *, transient: bool = False) -> Reject:
        return Reject(stage=self.name, reason=reason, detail=detail, transient=transient)

    @abstractmethod
    async def run(self, inputs: dict[str, Any], ctx: StageContext) -> StageOutput | Reject: ...
