"""A small decoder-only transformer over text tokens and image patches, trainable on a CPU.

It mirrors the shape of BAGEL's objective at toy scale: one sequence of text tokens, clean
VAE patches, ViT patches and noised target patches; cross-entropy on loss-bearing text and
flow-matching MSE on the target patches. The "VAE latent" of the tiny model is the 16×16 pixel
patch itself: no autoencoder to download or train, the same loss.

Flow matching (BAGEL's convention): t = sigmoid(randn), shifted towards noise by the timestep
shift; x_t = (1 - t) x + t ε; the model predicts the velocity ε - x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from curation.trainer.pack import PackedBatch


@dataclass(frozen=True)
class TinyConfig:
    vocab_size: int
    dim: int
    layers: int
    heads: int
    mlp_ratio: int
    max_positions: int
    cells_per_side: int
    vae_patch: int
    vit_patch: int
    timestep_shift: float


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(t, 3, self.heads, d // self.heads).permute(1, 2, 0, 3)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(attended.transpose(0, 1).reshape(t, d))
        return x + self.mlp(self.norm2(x))


class TinyModel(nn.Module):
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.embed = nn.Embedding(cfg.vocab_size, d)
        self.position = nn.Embedding(cfg.max_positions, d)
        self.cell = nn.Embedding(cfg.cells_per_side ** 2, d)
        self.vae_in = nn.Linear(3 * cfg.vae_patch ** 2, d)
        self.vit_in = nn.Linear(3 * cfg.vit_patch ** 2, d)
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, cfg.vocab_size)
        self.vae_out = nn.Linear(d, 3 * cfg.vae_patch ** 2)

    def timestep_embedding(self, t: torch.Tensor) -> torch.Tensor:
        half = self.cfg.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        angles = 1000.0 * t[:, None] * freqs[None, :]
        return self.time(torch.cat([angles.cos(), angles.sin()], dim=-1))

    def forward(self, batch: PackedBatch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Losses present in the batch: `ce` when it has loss-bearing text, `mse` when it has a target image."""
        n, d = batch.num_tokens, self.cfg.dim
        if int(batch.position_ids.max()) >= self.cfg.max_positions:
            raise ValueError(f"a sample spans {int(batch.position_ids.max()) + 1} positions, "
                             f"more than max_positions {self.cfg.max_positions}")
        x = torch.zeros(n, d, device=batch.position_ids.device)
        x[batch.text_index] = self.embed(batch.text_ids).to(x.dtype)

        target = batch.vae_patches[batch.vae_noised]
        inputs = batch.vae_patches.clone()
        if target.numel():
            noise = torch.randn(target.shape, generator=generator, device=target.device)
            t = torch.sigmoid(torch.randn(target.shape[0], generator=generator, device=target.device))
            shift = self.cfg.timestep_shift
            t = shift * t / (1 + (shift - 1) * t)
            inputs[batch.vae_noised] = (1 - t[:, None]) * target + t[:, None] * noise
        vae_tokens = self.vae_in(inputs) + self.cell(batch.vae_cells)
        if target.numel():
            vae_tokens[batch.vae_noised] = vae_tokens[batch.vae_noised] + self.timestep_embedding(t)
        x[batch.vae_index] = vae_tokens.to(x.dtype)  # under autocast the projections come out in bf16
        x[batch.vit_index] = (self.vit_in(batch.vit_patches) + self.cell(batch.vit_cells)).to(x.dtype)
        x = x + self.position(batch.position_ids)

        for block in self.blocks:
            x = block(x, batch.attention)
        x = self.norm(x)

        losses = {}
        if batch.label_index.numel():
            losses["ce"] = F.cross_entropy(self.lm_head(x[batch.label_index]).float(), batch.labels)
        if target.numel():
            predicted = self.vae_out(x[batch.vae_index[batch.vae_noised]]).float()
            losses["mse"] = F.mse_loss(predicted, noise - target)
        return losses
