"""The training loop: AdamW, linear warm-up, optional EMA, gradient clipping, bf16 where the
device has it, and checkpoints that resume the model, the optimizer and the data order.

Determinism: the data order is a function of the seed and the saved loader state, and the
noise of step `s` on rank `r` comes from a generator seeded by (seed, s, r). A run resumed from
a checkpoint therefore repeats the uninterrupted run's batches and losses.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from curation.trainer.loader import ResumableLoader, ResumeMismatch

log = logging.getLogger("curation.train")


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str) -> Context:
    """One process, or one of `torchrun`'s (it sets WORLD_SIZE, RANK, LOCAL_RANK)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if world_size > 1 else 0
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return Context(rank, world_size, device)


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    lr: float
    warmup_steps: int
    betas: tuple[float, float]
    weight_decay: float
    max_grad_norm: float
    ema: float | None  # decay, or None for no EMA copy
    loss_weights: dict[str, float]  # "ce", "mse"
    precision: str  # "auto" (bf16 where supported), "bf16" or "fp32"
    seed: int
    save_every: int
    keep_checkpoints: int
    log_every: int
    log_samples: bool  # write each rank's consumed sample keys to samples-rank<r>.jsonl
    init_from: str | None  # a run folder whose latest weights start this one (stage 2 from stage 1)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" or (precision == "auto" and supported):
        return torch.bfloat16
    return None


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    state = int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(state)


def checkpoints(out_dir: Path) -> list[Path]:
    return sorted((out_dir / "checkpoints").glob("step_*.pt"))


def train(model: torch.nn.Module, loader: ResumableLoader, cfg: LoopConfig, out_dir: Path, ctx: Context) -> list[dict]:
    model.to(ctx.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema is not None else None

    step = 0
    saved = checkpoints(out_dir)
    if saved:
        state = torch.load(saved[-1], map_location=ctx.device, weights_only=False)
        if state["world_size"] != ctx.world_size:
            raise ResumeMismatch(f"{saved[-1]} was written by {state['world_size']} processes, this run has {ctx.world_size}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if ema is not None:
            ema.load_state_dict(state["ema"] if "ema" in state else state["model"])
        loader.load_state_dict(state["data"][ctx.rank])
        step = state["step"]
        log.info("resumed from %s at step %d", saved[-1], step)
    elif cfg.init_from:
        start = checkpoints(Path(cfg.init_from))
        if not start:
            raise FileNotFoundError(f"init_from={cfg.init_from}: no checkpoints/step_*.pt there")
        weights = torch.load(start[-1], map_location=ctx.device, weights_only=False)
        model.load_state_dict(weights["ema"] if "ema" in weights else weights["model"])
        if ema is not None:
            ema.load_state_dict(model.state_dict())
        log.info("initialised from %s", start[-1])
    metrics = _Log(out_dir / "metrics.jsonl", step, enabled=ctx.is_main)
    samples = _Log(out_dir / f"samples-rank{ctx.rank}.jsonl", step, enabled=cfg.log_samples)

    ddp = DistributedDataParallel(model, find_unused_parameters=True) if ctx.world_size > 1 else model
    dtype = autocast_dtype(cfg.precision, ctx.device)
    model.train()
    history: list[dict] = []
    batches = iter(loader)
    while step < cfg.steps:
        batch = next(batches).to(ctx.device)
        with torch.autocast(ctx.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            losses = ddp(batch, step_generator(cfg.seed, step, ctx.rank, ctx.device))
        if not losses:
            raise ValueError(f"batch {batch.keys} has no loss-bearing item")
        loss = sum(cfg.loss_weights[name] * value for name, value in losses.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        schedule.step()
        if ema is not None:
            with torch.no_grad():
                for kept, live in zip(ema.parameters(), model.parameters()):
                    kept.lerp_(live, 1 - cfg.ema)
        step += 1

        record = {"step": step, **_mean_over_ranks(losses, ctx), "lr": schedule.get_last_lr()[0],
                  "grad_norm": float(grad_norm), "samples": len(batch.keys), "tokens": batch.num_tokens,
                  "skipped": loader.skipped}
        history.append(record)
        metrics.write(record)
        samples.write({"step": step, "keys": batch.keys})
        if ctx.is_main and (step % cfg.log_every == 0 or step == cfg.steps):
            log.info("step %d %s", step, " ".join(f"{k}={v:.4g}" for k, v in record.items()
                                                  if k not in ("step",) and isinstance(v, float)))
        if step % cfg.save_every == 0 or step == cfg.steps:
            _save(out_dir, step, model, ema, optimizer, schedule, loader, cfg.keep_checkpoints, ctx)
    return history


def _mean_over_ranks(losses: dict[str, torch.Tensor], ctx: Context) -> dict[str, float]:
    """Each loss averaged over the ranks whose batch had it."""
    names = ("ce", "mse")
    sums = torch.tensor([[float(losses[n].detach()) if n in losses else 0.0, float(n in losses)] for n in names],
                        dtype=torch.float64, device=ctx.device)
    if ctx.world_size > 1:
        dist.all_reduce(sums)
    return {n: float(s / c) for n, (s, c) in zip(names, sums.tolist()) if c > 0}


def _save(out_dir: Path, step: int, model, ema, optimizer, schedule, loader: ResumableLoader, keep: int,
          ctx: Context) -> None:
    data = [loader.state_dict()]
    if ctx.world_size > 1:
        data = [None] * ctx.world_size
        dist.all_gather_object(data, loader.state_dict())
    if ctx.is_main:
        state = {"step": step, "world_size": ctx.world_size, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "data": data}
        if ema is not None:
            state["ema"] = ema.state_dict()
        folder = out_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step_{step:08d}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # a killed run leaves the previous checkpoint or this one, never half of one
        for old in checkpoints(out_dir)[:-keep]:
            old.unlink()
        log.info("saved %s", path)
    if ctx.world_size > 1:
        dist.barrier()


class _Log:
    """An append-only JSON-lines file that a resumed run first cuts back to the checkpoint's step."""

    def __init__(self, path: Path, step: int, *, enabled: bool):
        self.path = path
        self.enabled = enabled
        if enabled and path.exists():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
