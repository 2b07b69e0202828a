"""The interface of each backend role.

A backend knows which model (id, revision) and which settings it runs, for lineage; checks at
start-up that it can work (`check()` raises `BackendUnavailable` with one sentence a user can
act on); and does I/O. It does not cache, does not decide what to compute, and knows nothing
about modes or schemas. Retries and timeouts for HTTP backends live in `curation/backends/http.py`.

Sample-level failures come back as `Reject` values. Exceptions are for a broken run only
(`BackendUnavailable` at start-up, `BackendFailed` during the run).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping

from PIL import Image

from curation.core import images
from curation.core.images import ImageRef
from curation.core.records import Reject
from curation.core.templates import Template


class BackendUnavailable(RuntimeError):
    """The backend cannot work at all (server down, weights missing, package not installed)."""


class BackendFailed(BackendUnavailable):
    """The backend stopped working during the run, for every sample alike, so the run must stop.

    A server that refuses this configuration (a wrong model, an unknown parameter, a refused key, a
    wrong path), a server gone for good, an engine that died (vLLM's `EngineDeadError`, a CUDA
    error). Raised from a backend call, it propagates through the stage and the executor: the
    request that raised it gets no result in the store, results finished before stay there, and
    `curation.run` prints the one-sentence message and exits with status 2. Once the cause is
    fixed, the same command computes what is missing. A failure of one sample only is a `Reject`.
    """


class Backend(ABC):
    role: ClassVar[str]
    #: How many requests this backend may have in flight at once (the executor enforces it).
    concurrency: int = 1

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """`{"id", "revision", "settings"}`: everything that determines its results, no secrets."""

    def check(self) -> None:
        """Fail fast, before any work, with one clear sentence."""

    async def aclose(self) -> None:
        """Release connections, engines, pools."""

    def summary(self) -> dict[str, Any] | None:
        """Per-run accounting for the manifest (calls, tokens, wall time), if the backend keeps any."""
        return None


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceItem:
    """One row of a source. `image` holds encoded bytes exactly as the source stores them."""

    source_id: str
    prompt: Any  # normally str; gates reject anything that is not valid text
    image: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    #: Set when the row itself could not be read; the gates turn it into a reject.
    problem: Reject | None = None


class Source(Backend):
    role: ClassVar[str] = "source"
    #: True when items carry the high-quality image (else a reference generator makes it).
    provides_images: bool = False

    @abstractmethod
    def iter_items(self, limit: int) -> Iterator[SourceItem]:
        """The first `limit` rows, always in the same order."""


# ----------------------------------------------------------------------------- teachers


@dataclass(frozen=True, eq=False)
class ImageInput:
    """A stored image as a teacher receives it: its encoded bytes, exactly as stored, and their ref.

    A server teacher can send the bytes on without decoding them (they are often already what the
    model should see); a teacher that needs pixels calls `pil()`. Not compared by value (that would
    compare the bytes): two inputs hold the same image when their `ref.sha256`s agree.
    """

    data: bytes = field(repr=False)
    ref: ImageRef

    def __post_init__(self):
        if len(self.data) != self.ref.nbytes:  # a ref paired with another image's bytes
            raise ValueError(f"the image bytes ({len(self.data)}) do not match their ref ({self.ref.nbytes} bytes)")

    def pil(self) -> Image.Image:
        """The pixels as RGB, decoded on first use and kept: shared by every caller, so read-only."""
        pixels = self.__dict__.get("_pixels")
        if pixels is None:
            pixels = images.decode(self.data)
            object.__setattr__(self, "_pixels", pixels)  # a cache, not state: frozen stays frozen
        return pixels

    @classmethod
    def from_pil(cls, image: Image.Image, fmt: str = "png") -> "ImageInput":
        """Encode a PIL image once (tests, callers that hold pixels rather than a stored image)."""
        data = images.encode(image, fmt)
        fmt = "jpeg" if fmt.lower() == "jpg" else fmt.lower()
        return cls(data, ImageRef(sha256=images.sha256(data), format=fmt, width=image.width, height=image.height,
                                  nbytes=len(data)))


@dataclass(frozen=True)
class ChatRequest:
    """One chat, as a stage asks for it: its template, the values and images the template uses, a seed.

    The stage that sends it owns the template (and keys its results by it); a teacher renders it
    and knows nothing of which stage asked.
    """

    template: Template
    values: Mapping[str, str]
    images: Mapping[str, ImageInput]
    seed: int


@dataclass(frozen=True)
class TeacherOutput:
    text: str
    #: What determines the text: finish reason, the image sizes the model saw (the stage adds its template).
    #: Never wall-clock or per-run values (latency, HTTP attempts, tokens): those go to `summary()`.
    lineage: dict[str, Any] = field(default_factory=dict)


class Teacher(Backend):
    """A chat model that sees images. Its identity is the model and how it samples, never a prompt."""

    role: ClassVar[str] = "teacher"

    @abstractmethod
    async def chat(self, request: ChatRequest) -> TeacherOutput | Reject: ...


# ----------------------------------------------------------------------------- image generators


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    seed: int
    width: int
    height: int


@dataclass(frozen=True)
class GeneratedImage:
    image: bytes | Image.Image  # encoded bytes as returned by a server, or a PIL image to encode once
    #: What determines the image (seed, size …); never latency or attempts (those go to `summary()`).
    lineage: dict[str, Any] = field(default_factory=dict)
    #: The model's own first thinking, when it wrote one (BAGEL think mode).
    thinking: str | None = None


class ImageGenerator(Backend):
    """Both the base model (initial, weaker images) and the reference generator (high quality)."""

    role: ClassVar[str] = "generator"

    @abstractmethod
    async def generate(self, request: GenerateRequest) -> GeneratedImage | Reject: ...


# ----------------------------------------------------------------------------- checker


class Checker(Backend):
    """Scores an image against its prompt (for reports; never used to build rows)."""

    role: ClassVar[str] = "checker"

    @abstractmethod
    async def score(self, prompt: str, image: Image.Image) -> dict[str, Any] | Reject: ...


# ----------------------------------------------------------------------------- scorers


@dataclass(frozen=True)
class ImageScores:
    """What a scorer measured of one image. None: this scorer does not measure that quantity.

    `alignment` is on the scorer's own scale (cosine similarity for CLIP/SigLIP), `aesthetic` on its
    head's scale (LAION's head: roughly 1–10), `unsafe` is a probability. `embedding` is the unit-norm
    image embedding the semantic dedup compares. `models` names, per score, the model id and revision
    that produced it (`{"alignment": {"id": ..., "revision": ...}, ...}`), for lineage.
    """

    alignment: float | None = None
    aesthetic: float | None = None
    unsafe: float | None = None
    embedding: tuple[float, ...] | None = field(default=None, repr=False)
    models: dict[str, dict[str, str]] = field(default_factory=dict)

    def measured(self) -> dict[str, float]:
        return {k: v for k, v in (("alignment", self.alignment), ("aesthetic", self.aesthetic),
                                  ("unsafe", self.unsafe)) if v is not None}


class Scorer(Backend):
    """Measures an image (against its prompt): alignment, aesthetics, safety, an embedding.

    The quality stages turn the scores into decisions; the scorer itself decides nothing.
    """

    role: ClassVar[str] = "scorer"

    @abstractmethod
    async def score(self, prompt: str, image: ImageInput) -> ImageScores | Reject: ...
