"""The stage contract.

A stage declares the fields it needs and makes, the backend role it calls, its default settings
and, when it sends chats, its prompt template. Its `key` is the hash of exactly what determines
its result: its name and version, its inputs (images by content hash), its backend's identity
(model, revision, settings), its template, its own settings and its seed. Same key, same result:
the executor never computes a key twice.

`run` returns a `StageOutput` or a `Reject`. It never returns None for "failed" and never raises
for a bad sample; it raises only when the run itself is broken (server gone, disk full).

Every concrete stage registers itself when its class is defined (`registered()`); the package
imports each of its modules, so a new stage is a new file in `curation/pipeline/stages/`. The
plan orders stages by what they need and make, and adds an optional one when it is switched on.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from PIL import Image

from curation.core import images
from curation.backends.base import Backend, ChatRequest, ImageInput
from curation.core.images import ImageRef
from curation.core.records import Reject, StageOutput
from curation.core.templates import Template, load_template
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
    #: When `<role>=` selects no backend, the role whose backend it shares (a judge: the teacher).
    role_fallback: ClassVar[str | None] = None
    #: Its settings (`stages.<name>.*`, part of its key), with their defaults: stated here only.
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: Not needed by any mode's columns: in a plan only while `stages.<name>.enabled` is true and its
    #: backend role is configured; it then serves every mode whose stages make all it needs.
    optional: ClassVar[bool] = False
    #: Its purpose is to reject samples: the plan runs it (and what it needs) as early as the data
    #: allows, so a sample it rejects costs no later model call.
    check: ClassVar[bool] = False
    #: Its results are for the card only: its rejects do not reject rows.
    report_only: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not inspect.isabstract(cls) and "name" in cls.__dict__:
            _REGISTRY.append(cls)

    def key(self, inputs: dict[str, Any], backend_identity: dict | None, seed: int, settings: dict) -> str:
        payload = {
            "stage": self.name,
            "version": self.version,
            "inputs": {k: _key_value(inputs[k]) for k in sorted(inputs)},
            "backend": backend_identity,
            "seed": seed,
            "settings": settings,
        }
        call = self.call_identity()
        if call is not None:  # only stages that send a prompt: the others keep their keys (and cached images)
            payload["call"] = call
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def call_identity(self) -> dict[str, Any] | None:
        """What this stage sends its backend beyond inputs and settings (a prompt template), for its key."""
        return None

    def reject(self, reason: str, detail: str = "", *, transient: bool = False) -> Reject:
        return Reject(stage=self.name, reason=reason, detail=detail, transient=transient)

    @abstractmethod
    async def run(self, inputs: dict[str, Any], ctx: StageContext) -> StageOutput | Reject: ...


_REGISTRY: list[type[Stage]] = []


def registered() -> tuple[type[Stage], ...]:
    """Every concrete stage class defined so far, in definition order (the plan sorts them itself)."""
    return tuple(_REGISTRY)


class ChatStage(Stage):
    """A stage that asks a chat model (the teacher, a judge): it owns its prompt template.

    By default the template uses the stage's `needs` by name: the ones listed in `images` as images,
    the others as text placeholders, and `request()` fills them. A stage that sends something else
    (a judge shows the same two images in both orders) names the template's `images` and `texts`
    and builds its `ChatRequest` itself. Either way the template is checked when the stage is
    built, so a wrong one stops the run before any work. Its name@version goes into lineage, its
    content into the stage's key.
    """

    role: ClassVar[str | None] = "teacher"
    #: `curation/templates/<template>.yaml`
    template: ClassVar[str]
    #: The images the template shows (by default: which of `needs` are images).
    images: ClassVar[tuple[str, ...]] = ()
    #: The template's text placeholders (None: the `needs` that are not images).
    texts: ClassVar[tuple[str, ...] | None] = None

    def __init__(self):
        texts = self.texts if self.texts is not None else [n for n in self.needs if n not in self.images]
        self.chat_template: Template = load_template(self.template, images=set(self.images), placeholders=set(texts))

    def call_identity(self) -> dict[str, Any]:
        return {"template": self.chat_template.tag, "template_sha256": self.chat_template.digest}

    async def request(self, inputs: dict[str, Any], ctx: StageContext, seed: int) -> ChatRequest:
        images = {name: await ctx.load_image_input(inputs[name]) for name in self.images}
        values = {name: inputs[name] for name in (self.texts if self.texts is not None else self.needs)
                  if name not in self.images}
        return ChatRequest(self.chat_template, values, images, seed)
