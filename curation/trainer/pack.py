"""Plans → packed batches under a token budget, as flat tensors for the tiny model.

Packing is greedy and in order: plans join the current batch while it stays within
`max_tokens`; the first plan that does not fit starts the next batch. A batch's `state` is the
stream state right after its last plan, so a run resumed from it reads the carried-over plan
again and builds the very same batches.

Layout of a batch (one sequence, samples side by side): every item is framed by its two frame
tokens; text positions hold token ids, image positions hold patches (VAE: 16×16 pixels, ViT:
14×14). Attention stays inside a sample; within it a token sees earlier items and, inside its
own item, earlier text tokens or the whole image. A noised target image is seen by no later
item (BAGEL's rule: later items condition on the clean copy, never on the noise).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from typing import Iterable, Iterator, Mapping

import torch

from curation.trainer.plan import Item, RowPlan
from curation.trainer.tokenizer import SpecialTokens

IGNORE = -100


@dataclass(frozen=True)
class Planned:
    plan: RowPlan
    key: tuple  # (mode, epoch, sample_id): who the row is, for logs and tests
    state: dict  # the stream state right after this row


def pack(planned: Iterable[Planned], max_tokens: int) -> Iterator[list[Planned]]:
    group: list[Planned] = []
    used = 0
    for item in planned:
        tokens = item.plan.num_tokens
        if tokens > max_tokens:
            raise ValueError(f"{item.key}: {tokens} tokens exceed the batch budget {max_tokens}; "
                             "max_tokens_per_sample must not exceed max_tokens_per_batch")
        if group and used + tokens > max_tokens:
            yield group
            group, used = [], 0
        group.append(item)
        used += tokens
    if group:
        yield group


@dataclass
class PackedBatch:
    position_ids: torch.Tensor  # [T] position of each token within its sample
    text_index: torch.Tensor  # [Nt] where token ids go
    text_ids: torch.Tensor  # [Nt]
    label_index: torch.Tensor  # [Nl] positions whose next token is a loss-bearing target
    labels: torch.Tensor  # [Nl]
    vae_index: torch.Tensor  # [Nv] where VAE patches go
    vae_patches: torch.Tensor  # [Nv, 3*16*16]
    vae_cells: torch.Tensor  # [Nv] row * cells_per_side + column
    vae_noised: torch.Tensor  # [Nv] bool: a generation target, noised by the model
    vit_index: torch.Tensor
    vit_patches: torch.Tensor  # [Ni, 3*14*14]
    vit_cells: torch.Tensor
    attention: torch.Tensor  # [T, T] bool, True where a query may attend a key
    keys: list = field(default_factory=list)  # the samples, in order
    stream: int = 0
    state: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return int(self.position_ids.numel())

    def to(self, device: torch.device | str) -> "PackedBatch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device)
        return PackedBatch(**moved)


def patchify(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """[3, H, W] → [H/p * W/p, p*p*3], row-major over the grid (BAGEL's patch order)."""
    c, h, w = pixels.shape
    grid = pixels.reshape(c, h // patch, patch, w // patch, patch)
    return torch.einsum("chpwq->hwpqc", grid).reshape(-1, patch * patch * c)


def kept_items(planned: Planned, dropout: Mapping[str, float], seed: int) -> list[Item]:
    """Classifier-free-guidance dropout: only droppable items, each with its kind's probability.

    The coin is seeded by the sample and the seed, so a resumed run drops the same items."""
    rng = random.Random(f"{seed}:{planned.key}")
    return [item for item in planned.plan.items if not (item.droppable and rng.random() < dropout[item.kind])]


def collate(group: list[Planned], *, special: SpecialTokens, vae_patch: int, vit_patch: int,
            cells_per_side: int, dropout: Mapping[str, float], seed: int, stream: int) -> PackedBatch:
    cols: dict[str, list] = {k: [] for k in ("position", "text_index", "text_ids", "label_index", "labels",
                                              "vae_index", "vae_patches", "vae_cells", "vae_noised",
                                              "vit_index", "vit_patches", "vit_cells")}
    spans: list[tuple[int, int, int, bool, bool]] = []  # per item: start, end, sample start, full, noised
    cursor = 0

    def put_text(ids: list[int], position: int, targets: list[int] | None = None) -> None:
        """Token ids from `cursor` on; `targets` are what these positions predict (loss-bearing text)."""
        nonlocal cursor
        cols["text_index"].extend(range(cursor, cursor + len(ids)))
        cols["text_ids"].extend(ids)
        if targets is not None:
            cols["label_index"].extend(range(cursor, cursor + len(targets)))
            cols["labels"].extend(targets)
        cols["position"].extend(range(position, position + len(ids)))
        cursor += len(ids)

    for planned in group:
        position, sample_start = 0, cursor
        for item in kept_items(planned, dropout, seed):
            start = cursor
            if item.kind == "text":
                # <|im_start|> t1 … tn <|im_end|>: the first n+1 positions predict t1 … tn <|im_end|>
                ids = [special.bos_token_id, *item.ids, special.eos_token_id]
                put_text(ids, position, ids[1:] if item.loss else None)
                position += len(ids)
            else:
                patch = vae_patch if item.kind == "vae" else vit_patch
                patches = patchify(item.pixels, patch)
                cells_w = item.pixels.shape[2] // patch
                put_text([special.start_of_image], position)
                cols[f"{item.kind}_index"].extend(range(cursor, cursor + len(patches)))
                cols[f"{item.kind}_patches"].append(patches)
                cols[f"{item.kind}_cells"].extend((i // cells_w) * cells_per_side + i % cells_w
                                                  for i in range(len(patches)))
                if item.kind == "vae":
                    cols["vae_noised"].extend([item.loss] * len(patches))
                cols["position"].extend([position] * len(patches))  # the whole image shares one position
                cursor += len(patches)
                put_text([special.end_of_image], position)
                position += 1
            spans.append((start, cursor, sample_start, item.kind != "text", item.kind == "vae" and item.loss))

    def long(name: str) -> torch.Tensor:
        return torch.tensor(cols[name], dtype=torch.long)

    def stacked(name: str, width: int) -> torch.Tensor:
        return torch.cat(cols[name]) if cols[name] else torch.zeros(0, width)

    return PackedBatch(
        position_ids=long("position"), text_index=long("text_index"), text_ids=long("text_ids"),
        label_index=long("label_index"), labels=long("labels"),
        vae_index=long("vae_index"), vae_patches=stacked("vae_patches", 3 * vae_patch ** 2),
        vae_cells=long("vae_cells"), vae_noised=torch.tensor(cols["vae_noised"], dtype=torch.bool),
        vit_index=long("vit_index"), vit_patches=stacked("vit_patches", 3 * vit_patch ** 2),
        vit_cells=long("vit_cells"),
        attention=attention_mask(spans, cursor),
        keys=[p.key for p in group], stream=stream, state=group[-1].state,
    )


def attention_mask(spans: list[tuple[int, int, int, bool, bool]], n: int) -> torch.Tensor:
    """Filled item by item: `spans` are (start, end, sample start, full, noised) per item, in order.

    An item's rows see the earlier items of its sample except noised ones, and themselves
    (all of an image; text causally). Touching only these blocks keeps a 4K-token batch cheap."""
    mask = torch.zeros(n, n, dtype=torch.bool)
    for start, end, sample_start, full, _ in spans:
        mask[start:end, sample_start:start] = True
        for other_start, other_end, other_sample, _, noised in spans:
            if noised and other_sample == sample_start and other_end <= start:
                mask[start:end, other_start:other_end] = False
        block = torch.ones(end - start, end - start, dtype=torch.bool)
        mask[start:end, start:end] = block if full else block.tril()
    return mask
