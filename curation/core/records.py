"""The values that flow through a build, one definition each.

    SourceItem (backends) ─► Sample (gates) ─► StageOutput | Reject (stages) ─► Outcome (executor) ─► rows (emit)

A `Sample` carries its gate reject as a field; an `Outcome` is what the executor leaves in the
store for one sample: the fields the stages made, their lineage, and each stage's reject. Emit,
the manifest and merge read these by attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from curation.core.images import ImageRef


@dataclass(frozen=True)
class Reject:
    """A sample that cannot go on through a stage, with a named reason.

    `transient` marks failures of the world rather than of the sample (server errors after the
    last retry, time-outs): they are recorded like any reject, and the next run tries them again.
    """

    stage: str
    reason: str
    detail: str = ""
    transient: bool = False

    def to_json(self) -> dict:
        return {"reject": True, "stage": self.stage, "reason": self.reason, "detail": self.detail,
                "transient": self.transient}


@dataclass(frozen=True)
class StageOutput:
    """What a stage made: its fields (text, ImageRef or JSON-able values) and its lineage notes."""

    fields: dict[str, Any]
    lineage: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"fields": {k: encode_value(v) for k, v in self.fields.items()}, "lineage": self.lineage}


def encode_value(value: Any) -> Any:
    if isinstance(value, ImageRef):
        return {"__image__": value.to_json()}
    return value


def decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "__image__" in value:
        return ImageRef.from_json(value["__image__"])
    return value


def result_from_json(data: dict) -> StageOutput | Reject:
    if data.get("reject"):
        return Reject(stage=data["stage"], reason=data["reason"], detail=data.get("detail", ""),
                      transient=bool(data.get("transient", False)))
    return StageOutput(fields={k: decode_value(v) for k, v in data["fields"].items()},
                       lineage=data.get("lineage", {}))


@dataclass
class Sample:
    """One prompt on its way through the stages.

    `index` is the sample's position in the source order: a mode with count k takes the samples
    with index < k, which is what lets one recipe give modes different sizes over one pool.
    `reject` is set when the gates turned the row away: the sample still flows to the executor
    so that it is accounted for (sourced = accepted + rejected), but no stage runs for it.
    """

    sample_id: str
    source_id: str
    index: int
    fields: dict[str, Any]
    lineage: dict[str, Any] = field(default_factory=dict)
    reject: Reject | None = None
    #: (sample_id, prompt_key, image_sha256, phash, pixels, lossless, nbytes) for rows that passed the
    #: per-row gates: what the end-of-run dedup pass (pipeline/dedup.py) compares and ranks; None for
    #: rows turned away before that.
    dedup: tuple | None = None


@dataclass
class Outcome:
    """What the executor leaves in the store for one sample; the only input of emit.

    `fields` are every field the stages made (ImageRef values included), `lineage` holds the
    source's lineage under "source" and, per stage that produced a result, its key, seed and
    notes; `rejects` maps a stage name (or "gates") to that stage's reject.
    """

    sample_id: str
    source_id: str
    index: int
    fields: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    rejects: dict[str, Reject] = field(default_factory=dict)
    dedup: tuple | None = None  # the sample's dedup keys (see Sample.dedup)

    def first_reject(self, stage_names: Iterable[str]) -> Reject | None:
        """The gates' reject, else the first of `stage_names` (in order) that rejected the sample."""
        for name in ("gates", *stage_names):
            if name in self.rejects:
                return self.rejects[name]
        return None

    def to_json(self) -> dict:
        return {"sample_id": self.sample_id, "source_id": self.source_id, "index": self.index,
                "fields": {k: encode_value(v) for k, v in self.fields.items()}, "lineage": self.lineage,
                "rejects": {k: r.to_json() for k, r in self.rejects.items()},
                "dedup": None if self.dedup is None else dedup_to_json(self.dedup)}

    @classmethod
    def from_json(cls, data: dict) -> "Outcome":
        return cls(sample_id=data["sample_id"], source_id=data["source_id"], index=data["index"],
                   fields={k: decode_value(v) for k, v in data["fields"].items()}, lineage=data["lineage"],
                   rejects={k: result_from_json(r) for k, r in data["rejects"].items()},
                   dedup=dedup_from_json(data["sample_id"], data.get("dedup")))


def dedup_to_json(keys: tuple) -> dict:
    """Dedup keys as JSON; the 64-bit perceptual hash as hex (JSON readers such as SQLite's hold
    integers as signed 64-bit, or as floats, and would change it)."""
    _, prompt_key, image_sha256, phash, pixels, lossless, nbytes = keys[:7]
    return {"prompt_key": prompt_key, "image_sha256": image_sha256, "phash": None if phash is None else f"{phash:x}",
            "pixels": pixels, "lossless": lossless, "nbytes": nbytes}


def dedup_from_json(sample_id: str, data: dict | None) -> tuple | None:
    if data is None:
        return None
    phash = data.get("phash")
    lossless = data.get("lossless")
    return (sample_id, data.get("prompt_key"), data.get("image_sha256"), None if phash is None else int(phash, 16),
            data.get("pixels"), None if lossless is None else bool(lossless), data.get("nbytes"))
