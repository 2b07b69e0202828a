"""`python -m curation.train data=<dir or Hub id> stage=1|2 model=tiny|bagel [overrides]`.

model=tiny trains the embedded small model here (one process, or many under
`torchrun --nproc-per-node N -m curation.train ...`), and resumes from the last checkpoint in
`out` when started again. model=bagel hands the same rows to BAGEL's own trainer
(see curation/trainer/bagel_adapter.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
import torch.distributed as dist
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from curation.core.cli import command
from curation.core.config import load_config, redact
from curation.trainer.dataset import mode_weights
from curation.trainer.loader import ResumableLoader, TrainStream
from curation.trainer.loop import Context, LoopConfig, init_distributed, train
from curation.trainer.plan import ImageGrid, Planner
from curation.trainer.tiny_model import TinyConfig, TinyModel
from curation.trainer.tokenizer import load_tokenizer

log = logging.getLogger("curation.train")

USAGE = """usage: python -m curation.train data=<dataset dir | Hub id> stage=1|2 model=tiny|bagel [key=value ...]
  e.g. python -m curation.train data=outputs/all stage=1 model=tiny
       python -m curation.train data=outputs/all stage=2 model=tiny init_from=outputs/train/tiny-stage1
       torchrun --nproc-per-node 8 -m curation.train data=org/irgl stage=1 model=tiny
  see recipes/train.yaml and recipes/train_model/*.yaml for every knob, docs/training.md for the walk-through."""


def compose(argv: Sequence[str]) -> DictConfig:
    """`model=<name>` (or train.yaml's default) picks the group recipes/train_model/<name>.yaml."""
    chosen = [o.value() for o in OverridesParser.create().parse_overrides(list(argv)) if o.key_or_group == "model"]
    model = chosen[-1] if chosen else load_config("train", []).model
    return load_config("train", [*argv, f"train_model={model}"])


def planner_for(cfg: DictConfig) -> Planner:
    m = cfg.train_model
    return Planner(load_tokenizer(m.tokenizer.kind, m.tokenizer.get("path")), ImageGrid(**m.vae), ImageGrid(**m.vit))


def build_loader(cfg: DictConfig, planner: Planner, ctx: Context) -> ResumableLoader:
    m = cfg.train_model
    stream = TrainStream(
        str(cfg.data), mode_weights(cfg.stages, cfg.stage, cfg.modes), planner, seed=cfg.seed, rank=ctx.rank,
        world_size=ctx.world_size, num_workers=cfg.num_workers, max_tokens_per_sample=m.max_tokens_per_sample,
        max_tokens_per_batch=m.max_tokens_per_batch, cfg_dropout=cfg.cfg_dropout, vae_patch=m.vae.stride,
        vit_patch=m.vit.stride)
    return ResumableLoader(stream, cfg.num_workers)


def build_tiny(cfg: DictConfig, planner: Planner) -> TinyModel:
    m = cfg.train_model
    torch.manual_seed(cfg.seed)  # the initial weights are part of what the seed fixes
    return TinyModel(TinyConfig(vocab_size=planner.tokenizer.vocab_size, **m.arch,
                                cells_per_side=max(m.vae.max_side // m.vae.stride, m.vit.max_side // m.vit.stride),
                                vae_patch=m.vae.stride, vit_patch=m.vit.stride, timestep_shift=m.timestep_shift))


def loop_config(cfg: DictConfig) -> LoopConfig:
    o = cfg.train_model.optim
    return LoopConfig(steps=cfg.steps if cfg.steps is not None else cfg.stages[str(cfg.stage)].steps,
                      lr=o.lr, warmup_steps=o.warmup_steps, betas=tuple(o.betas), weight_decay=o.weight_decay,
                      max_grad_norm=o.max_grad_norm, ema=o.ema, loss_weights=dict(cfg.loss_weights),
                      precision=cfg.precision, seed=cfg.seed, save_every=cfg.save_every,
                      keep_checkpoints=cfg.keep_checkpoints, log_every=cfg.log_every, log_samples=cfg.log_samples,
                      init_from=cfg.init_from)


def run(cfg: DictConfig) -> Path:
    out = Path(cfg.out)
    if cfg.train_model.kind == "bagel":
        from curation.trainer.bagel_adapter import launch

        return launch(cfg, out)
    ctx = init_distributed(cfg.dist_backend)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(redact(cfg))))
    planner = planner_for(cfg)
    train(build_tiny(cfg, planner), build_loader(cfg, planner, ctx), loop_config(cfg), out, ctx)
    if dist.is_initialized():
        dist.destroy_process_group()
    return out


def _logged_compose(argv: list[str]) -> DictConfig:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return compose(argv)


main = command("train", USAGE, compose=_logged_compose)(run)


if __name__ == "__main__":
    main()
