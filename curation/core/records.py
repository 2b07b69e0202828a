"""The values that flow between stages: samples, stage outputs and rejects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    """

    sample_id: str
    source_id: str
    index: int
    fields: dict[str, Any]
    lineage: dict[str, Any] = field(default_factory=dict)
