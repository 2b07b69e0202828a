"""Does the loader keep up with the tiny model? Samples/s of each, on this machine.

    python benchmarks/trainer_loader.py [data=<dataset dir>] [batches=30] [train overrides ...]

Without `data=`, builds an offline-world dataset of all six modes first (curation.run). The
loader side runs in the calling process (no workers) and does everything a worker does: read
row groups, decode and resize images, tokenise, plan, pack, build the tensors. The model side
runs forward, backward and an AdamW step of the tiny model on the very same batches. A ratio
above 1 means one loader worker feeds one training process; below 1, raise `num_workers`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch

from curation.train import build_loader, build_tiny, compose, planner_for
from curation.trainer.loop import Context, step_generator


def main(argv: list[str]) -> None:
    options = dict(a.split("=", 1) for a in argv if a.split("=", 1)[0] in ("data", "batches"))
    rest = [a for a in argv if a.split("=", 1)[0] not in ("data", "batches")]
    data = options.get("data") or str(offline_dataset())
    batches = int(options.get("batches", 30))
    cfg = compose([f"data={data}", "model=tiny", "num_workers=0", *rest])
    ctx = Context(rank=0, world_size=1, device=torch.device("cpu"))
    planner = planner_for(cfg)

    loader = iter(build_loader(cfg, planner, ctx))
    next(loader)  # open the shards and read their footers outside the timing
    start = time.perf_counter()
    loaded = list(islice(loader, batches))
    load_s = time.perf_counter() - start
    samples = sum(len(b.keys) for b in loaded)

    model = build_tiny(cfg, planner)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train_model.optim.lr)
    start = time.perf_counter()
    for step, batch in enumerate(loaded):
        losses = model(batch, step_generator(cfg.seed, step, 0, ctx.device))
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
    step_s = time.perf_counter() - start

    tokens = sum(b.num_tokens for b in loaded)
    print(f"data: {data}")
    print(f"{batches} batches, {samples} samples, {tokens} tokens (budget {cfg.train_model.max_tokens_per_batch}), "
          f"{torch.get_num_threads()} torch threads")
    print(f"loader: {samples / load_s:8.1f} samples/s  ({load_s / batches * 1000:.0f} ms/batch)")
    print(f"model:  {samples / step_s:8.1f} samples/s  ({step_s / batches * 1000:.0f} ms/batch)")
    print(f"ratio loader/model: {step_s / load_s:.2f}")


def offline_dataset() -> Path:
    from curation.run import main as build

    tmp = Path(tempfile.mkdtemp(prefix="trainer_loader_"))
    return build(["recipe=all", "n=24", f"out={tmp}/ds", f"cache={tmp}/cache"])


if __name__ == "__main__":
    main(sys.argv[1:])
