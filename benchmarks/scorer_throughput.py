"""Scorer throughput on CPU by batch size: where does batching stop paying?

    python benchmarks/scorer_throughput.py [--images 512] [--batch-sizes 1 2 4 8 16 32 64 128] [--side 256]
                                           [--repeats 3] [--threads N]

Builds the tests' tiny random CLIP (32×32 input, 2 layers per tower), an aesthetic head on its image
embedding and a tiny ViT safety classifier (`tests/quality/tiny_models.py`), then scores `--images`
distinct PNG images (`--side` pixels, each with its own prompt) through `TransformersScorer.score`
exactly as the quality stages call it: all requests submitted at once, the micro-batcher grouping them
into batches of at most the batch size under test. For each batch size it prints images/s (best of
`--repeats`), the speed-up over batch size 1, and the mean batch size the batcher formed; then the
batch size that saturates the scorer: the smallest whose throughput is within 10% of the best.

The tiny model says what the batching machinery costs and where the per-batch overhead stops
dominating; a real CLIP ViT-L/14 on a GPU saturates at a different size (measure it there with your
checkpoint: `--model <folder>`). The load average is printed: on a shared machine compare quiet runs.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.backends.base import ImageInput  # noqa: E402
from curation.backends.scorers.alignment import AlignmentModel  # noqa: E402
from curation.backends.scorers.transformers_scorer import TransformersScorer  # noqa: E402
from tests.quality.tiny_models import (build_tiny_classifier, build_tiny_clip,  # noqa: E402
                                       plant_aesthetic_head)

SATURATION = 0.9


def make_inputs(count: int, side: int) -> list[tuple[str, ImageInput]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        pixels = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((side, side), Image.NEAREST)  # compressible, like renders
        out.append((f"image number {i}: a red ball left of {i % 7} blue cubes", ImageInput.from_pil(image)))
    return out


def fresh(inputs):
    """New ImageInput objects: each keeps its decoded pixels, and a real run decodes every image once."""
    return [(prompt, ImageInput(image.data, image.ref)) for prompt, image in inputs]


def run_once(scorer: TransformersScorer, inputs) -> float:
    async def main():
        start = time.perf_counter()
        await asyncio.gather(*(scorer.score(p, i) for p, i in inputs))
        elapsed = time.perf_counter() - start
        await scorer.aclose()
        return elapsed
    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--model", default=None, help="a CLIP/SigLIP folder instead of the tiny one")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else build_tiny_clip(tmp / "clip")
        classifier = build_tiny_classifier(tmp / "classifier")
        dim = AlignmentModel(model, device="cpu", dtype=torch.float32, text_padding="longest").embedding_dim
        head = tmp / "head.safetensors"
        plant_aesthetic_head(head, np.eye(dim), np.linspace(1, 10, dim))
        inputs = make_inputs(args.images, args.side)
        print(f"scorer throughput on CPU ({torch.get_num_threads()} torch threads, load average "
              f"{os.getloadavg()[0]:.2f}); {args.images} images of {args.side}² px; model {model.name}, "
              "aesthetic head, safety classifier")
        print(f"{'batch':>6} {'images/s':>10} {'vs batch 1':>11} {'mean batch':>11}")
        rates = {}
        for size in args.batch_sizes:
            scorer = TransformersScorer(model=str(model), aesthetic_head=str(head), safety_model=str(classifier),
                                        device="cpu", max_batch_size=size, max_wait_ms=5,
                                        concurrency=max(2 * size, 2))
            scorer.check()
            run_once(scorer, fresh(inputs[: min(len(inputs), 2 * size)]))  # warm-up, not timed
            best = min(run_once(scorer, fresh(inputs)) for _ in range(args.repeats))
            rates[size] = args.images / best
            timed = scorer.batcher.batch_sizes[-(len(scorer.batcher.batch_sizes) // (args.repeats + 1)):]
            print(f"{size:>6} {rates[size]:>10.1f} {rates[size] / rates[args.batch_sizes[0]]:>10.2f}x "
                  f"{np.mean(timed):>11.1f}")
        top = max(rates.values())
        saturating = min(s for s, r in rates.items() if r >= SATURATION * top)
        print(f"saturates at batch size {saturating} ({rates[saturating]:.1f} images/s, "
              f"{rates[saturating] / top:.0%} of the best, {top:.1f} images/s)")


if __name__ == "__main__":
    main()
