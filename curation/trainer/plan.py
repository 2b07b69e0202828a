"""One row → its sequence plan: the segments a trainer feeds, with their flags and token counts.

The plan is read from the mode's schema (`ModeSchema.sequence`), never restated here. Each
segment becomes one or more items, in order:

- text: one `text` item; `loss` as the schema says. Text without loss (prompt, questions,
  conditioning thinking) may be dropped for classifier-free guidance; text with loss never is.
- image: a noised VAE copy when it is a generation target (`loss`), then a clean VAE copy
  (`vae`) and a ViT copy (`vit`) when it is conditioning — the order BAGEL appends them in.
  The noised target is never dropped; clean copies may be.

Token counts: text through the model's tokenizer; images through their VAE (stride 16) or ViT
(patch 14) grid after the stride-aligned resize (IRGL.md: VAE side 512–1024, ViT side 378–980;
the bounds come from the model config). Every item also occupies its two frame tokens
(`<|im_start|> … <|im_end|>` or `<|vision_start|> … <|vision_end|>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping

import numpy as np
import torch
from PIL import Image

from curation.core import images
from curation.core.schema import ModeSchema
from curation.trainer.tokenizer import Tokenizer

FRAME_TOKENS = 2  # start and end token around every item


class PlanError(ValueError):
    """A row that cannot be planned (a null required value, an image that does not decode)."""


@dataclass(frozen=True)
class ImageGrid:
    """Resize bounds and stride of one image encoder (VAE or ViT)."""

    min_side: int
    max_side: int
    stride: int

    def size(self, width: int, height: int) -> tuple[int, int]:
        """BAGEL's resize rule: long side at most `max_side`, short side at least `min_side`, both
        rounded to a multiple of `stride`; if rounding pushed the long side over, scale once more."""
        scale = min(self.max_side / max(width, height), 1.0)
        scale = max(scale, self.min_side / min(width, height))
        w, h = self._scaled(width, height, scale)
        if max(w, h) > self.max_side:
            w, h = self._scaled(w, h, self.max_side / max(w, h))
        return w, h

    def tokens(self, width: int, height: int) -> int:
        return (width // self.stride) * (height // self.stride)

    def _scaled(self, width: int, height: int, scale: float) -> tuple[int, int]:
        def snap(v: float) -> int:
            return max(self.stride, int(round(v / self.stride)) * self.stride)

        return snap(round(width * scale)), snap(round(height * scale))


@dataclass(frozen=True)
class Item:
    kind: str  # "text" | "vae" | "vit"
    column: str
    turn: str  # "user" | "assistant"
    loss: bool  # text: cross-entropy; vae: the noised generation target (flow matching)
    droppable: bool  # may be dropped for classifier-free guidance
    content_tokens: int  # text ids or image grid cells, frame tokens not included
    ids: tuple[int, ...] = ()  # text only
    pixels: torch.Tensor | None = None  # images only: [3, H, W] in [-1, 1], already resized

    @property
    def tokens(self) -> int:
        return self.content_tokens + FRAME_TOKENS


@dataclass(frozen=True)
class RowPlan:
    mode: str
    sample_id: str
    items: tuple[Item, ...]

    @property
    def num_tokens(self) -> int:
        return sum(item.tokens for item in self.items)


class Planner:
    """`transforms` replaces the built-in resize (`to_tensor`) per encoder ("vae", "vit"): the BAGEL
    adapter passes BAGEL's own image transforms so its pixels are exactly what BAGEL makes."""

    def __init__(self, tokenizer: Tokenizer, vae: ImageGrid, vit: ImageGrid,
                 transforms: Mapping[str, Callable[[Image.Image], torch.Tensor]] | None = None):
        self.tokenizer = tokenizer
        self.vae = vae
        self.vit = vit
        # partials, not lambdas: data-loader workers may receive the planner by pickling
        self.transforms = dict(transforms or {"vae": partial(to_tensor, grid=vae), "vit": partial(to_tensor, grid=vit)})

    def plan(self, schema: ModeSchema, row: dict[str, Any]) -> RowPlan:
        sample_id = row["sample_id"]
        items: list[Item] = []
        for seg in schema.sequence:
            value = row[seg.column]
            if value is None:
                raise PlanError(f"{schema.mode}/{sample_id}: column {seg.column} is null")
            if schema.column(seg.column).is_image:
                items.extend(self._image_items(schema.mode, sample_id, seg, value))
            else:
                ids = tuple(self.tokenizer.encode(value))
                items.append(Item("text", seg.column, seg.turn, loss=seg.loss, droppable=not seg.loss,
                                  content_tokens=len(ids), ids=ids))
        return RowPlan(schema.mode, sample_id, tuple(items))

    def _image_items(self, mode: str, sample_id: str, seg, value: dict) -> list[Item]:
        if not (seg.loss or seg.vae or seg.vit):
            raise PlanError(f"{mode}: image segment {seg.column} has no copy (loss, vae and vit all false)")
        try:
            image = images.decode(value["bytes"])
        except images.ImageDecodeError as exc:
            raise PlanError(f"{mode}/{sample_id}: column {seg.column}: {exc}") from exc
        items = []
        if seg.loss or seg.vae:
            pixels = self.transforms["vae"](image)
            content = self.vae.tokens(pixels.shape[2], pixels.shape[1])
            if seg.loss:
                items.append(Item("vae", seg.column, seg.turn, loss=True, droppable=False,
                                  content_tokens=content, pixels=pixels))
            if seg.vae:
                items.append(Item("vae", seg.column, seg.turn, loss=False, droppable=True,
                                  content_tokens=content, pixels=pixels))
        if seg.vit:
            pixels = self.transforms["vit"](image)
            items.append(Item("vit", seg.column, seg.turn, loss=False, droppable=True,
                              content_tokens=self.vit.tokens(pixels.shape[2], pixels.shape[1]), pixels=pixels))
        return items


def to_tensor(image: Image.Image, grid: ImageGrid) -> torch.Tensor:
    """Resize to the grid and scale to [-1, 1] (BAGEL normalises with mean 0.5, std 0.5)."""
    width, height = grid.size(*image.size)
    resized = image.resize((width, height), Image.Resampling.BICUBIC)
    array = np.asarray(resized, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()
