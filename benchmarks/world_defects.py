"""How well the offline teacher names the base model's defects, and how fast the world runs.

For each of N seeded samples: a scene from `sample_scene`, its high-quality render (seed 2i), a
base-model render (seed 2i+1) with defects sampled at --rate, both analysed; the teacher writes
the initial and the improving thinking, and the defects it names are scored against those
injected with `match_defects`. Also prints GenEval-style checker accuracy of both images and the
time to render and analyse one image at 256² and 1024².

    python -m benchmarks.world_defects            # 500 samples at 256 px
    python -m benchmarks.world_defects --samples 2000 --size 512
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from curation.world.analyse import analyse
from curation.world.render import render_scene
from curation.world.scene import sample_scene
from curation.world.thinking import evaluate_defect_naming


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rate", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    report = evaluate_defect_naming(args.samples, args.size, rate=args.rate, seed=args.seed)
    elapsed = time.perf_counter() - start
    print(f"{report.samples} samples at {report.size}x{report.size}, defect rate {args.rate}, seed {args.seed} "
          f"({elapsed:.1f} s)")
    print(f"precision {report.precision:.3f}  recall {report.recall:.3f}  "
          f"({report.true_positives} matched, {report.found} named, {report.injected} injected)")
    print(f"{'kind':18s} {'matched':>8s} {'named':>6s} {'injected':>9s} {'recall':>7s}")
    for kind, (hits, named, injected) in report.per_kind.items():
        recall = f"{hits / injected:.3f}" if injected else "-"
        print(f"{kind:18s} {hits:8d} {named:6d} {injected:9d} {recall:>7s}")
    print(f"checker accuracy: initial images {report.initial_accuracy:.3f}, "
          f"high-quality images {report.better_accuracy:.3f}")

    for size, repeats in ((256, 40), (1024, 5)):
        render_ms, analyse_ms = _timings(size, repeats)
        print(f"{size}x{size}: render {render_ms:.1f} ms, analyse {analyse_ms:.1f} ms (median of {repeats})")


def _timings(size: int, repeats: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    renders, analyses = [], []
    for seed in range(repeats):
        scene = sample_scene(rng)
        start = time.perf_counter()
        image = render_scene(scene, size, seed)
        middle = time.perf_counter()
        analyse(image)
        renders.append(middle - start)
        analyses.append(time.perf_counter() - middle)
    return float(np.median(renders) * 1000), float(np.median(analyses) * 1000)


if __name__ == "__main__":
    main()
