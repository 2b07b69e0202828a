"""Gates: checks on each source row before any model is called.

They run in source order, in the main stream (so that order-dependent checks such as
duplicate detection are deterministic), and turn a `SourceItem` into a `Sample` or a `Reject`.
A source image is stored here, once, exactly as the source had it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curation import images
from curation.backends.base import SourceItem
from curation.records import Reject, Sample
from curation.store import Store

STAGE = "gates"


@dataclass(frozen=True)
class GateSettings:
    max_prompt_chars: int = 2000

    @classmethod
    def from_config(cls, cfg: Any) -> "GateSettings":
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__ if cfg is not None and k in cfg})


class Gates:
    def __init__(self, settings: GateSettings, store: Store):
        self.settings = settings
        self.store = store

    def admit(self, item: SourceItem, sample_id: str, index: int) -> Sample | Reject:
        if item.problem is not None:
            return item.problem
        prompt = item.prompt
        if not isinstance(prompt, str):
            return Reject(STAGE, "prompt_not_text", f"prompt is {type(prompt).__name__}")
        if not prompt.strip():
            return Reject(STAGE, "prompt_empty")
        if len(prompt) > self.settings.max_prompt_chars:
            return Reject(STAGE, "prompt_too_long", f"{len(prompt)} characters (maximum {self.settings.max_prompt_chars})")
        fields: dict[str, Any] = {"prompt": prompt.strip()}
        if item.image is not None:
            try:
                ref = images.probe(item.image)
            except images.ImageDecodeError as exc:
                return Reject(STAGE, "image_undecodable", str(exc))
            fields["hq_image"] = self.store.put_image_bytes(item.image, ref)
        return Sample(sample_id=sample_id, source_id=item.source_id, index=index, fields=fields,
                      lineage={"source": item.meta} if item.meta else {})
