"""Smoke test for in-process BAGEL on a GPU machine: load it, draw one image, print its plan.

    python scripts/bagel_smoke.py --repo-dir /src/Bagel --model-dir /models/BAGEL-7B-MoT \
        --prompt "a photo of two red balls on a wooden table" --think --out bagel_smoke.png

It goes through the same adapter as `generator=bagel` (start-up checks included), so a run that
passes here will load the same way inside `python -m curation.run`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from curation.backends.base import BackendUnavailable, GenerateRequest  # noqa: E402
from curation.backends.generators.bagel_inprocess import BagelInProcess  # noqa: E402
from curation.core.config import load_config  # noqa: E402
from curation.core.records import Reject  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo-dir", required=True, help="checkout of github.com/ByteDance-Seed/Bagel")
    parser.add_argument("--model-dir", required=True, help="BAGEL-7B-MoT weights folder")
    parser.add_argument("--prompt", default="a photo of two red balls to the left of a blue cube, on a wooden table")
    parser.add_argument("--think", action="store_true", help="let BAGEL write its plan first")
    parser.add_argument("--size", type=int, default=1024, help="square image side (multiple of 16, 256..1024)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bagel_smoke.png")
    args = parser.parse_args()

    # The same guidance settings as `generator=bagel` and `generator=bagel_omni` (recipes/bagel/text_to_image.yaml).
    guidance = {**load_config("config", ["generator=bagel"]).generator.guidance, "num_timesteps": args.steps}
    generator = BagelInProcess(repo_dir=args.repo_dir, model_dir=args.model_dir, guidance=guidance, width=args.size,
                               height=args.size, think=args.think)
    started = time.perf_counter()
    try:
        generator.check()
    except BackendUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"loaded in {time.perf_counter() - started:.1f}s", file=sys.stderr)

    started = time.perf_counter()
    request = GenerateRequest(prompt=args.prompt, seed=args.seed, width=args.size, height=args.size)
    result = asyncio.run(generator.generate(request))
    if isinstance(result, Reject):
        print(f"rejected: {result.reason}: {result.detail}", file=sys.stderr)
        return 1
    result.image.save(args.out)
    print(f"image {result.image.size} written to {args.out} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    if result.thinking is not None:
        print("thinking:\n" + result.thinking)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
