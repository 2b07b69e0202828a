"""The first command on a GPU machine: both ways of running BAGEL, and the teacher on vLLM, on 8 prompts.

    python scripts/bagel_smoke.py --repo-dir /src/Bagel --model-dir /models/BAGEL-7B-MoT \
        --omni-url http://127.0.0.1:8001/v1 --teacher-model Qwen/Qwen2.5-VL-7B-Instruct --out smoke/

Each path is optional (give the arguments of the ones to run; at least one). For each BAGEL path
(`generator=bagel` in this process, `generator=bagel_omni` against a vLLM-Omni server) it draws the
prompts with one seed each, then prompt 1 again with its own seed (the image must repeat) and with
another seed (the image must change), and prints seconds per image and GPU memory. The teacher
(`teacher=vllm`, in this process) writes an initial thinking for each image drawn, all in flight at
once, then the first again with the same seed; it prints seconds per thinking and GPU memory.
The paths run one after the other, each model freed before the next loads. Every backend is built
from the same recipes as `python -m curation.run`, through the same adapters and start-up checks.
Expected output: docs/gpu_smoke.md. Exit status: 0 all checks passed, 1 a check failed, 2 a path
could not start (one sentence says why).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from curation.backends.base import (BackendUnavailable, ChatRequest, GeneratedImage, GenerateRequest,  # noqa: E402
                                    ImageInput)
from curation.core.config import load_config  # noqa: E402
from curation.core.records import Reject  # noqa: E402

PROMPTS = (
    "a photo of two red balls to the left of a blue cube, on a wooden table",
    "a photo of a yellow bicycle leaning against a green door",
    "a photo of three white cups on a black tray",
    "a photo of a brown dog sitting to the right of an orange cat",
    "a photo of a purple umbrella above a small wooden bench in the rain",
    "a photo of a glass vase with five tulips, beside a closed laptop",
    "a photo of a red bus behind a blue car on a city street at dusk",
    "a photo of a teddy bear wearing a green scarf, on a snowy hill",
)
OTHER_SEED_OFFSET = 1_000_003  # far from every seed of the run, so "another seed" really is one


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo-dir", help="in-process BAGEL: a checkout of github.com/ByteDance-Seed/Bagel")
    parser.add_argument("--model-dir", help="in-process BAGEL: the BAGEL-7B-MoT weights folder")
    parser.add_argument("--omni-url", help="BAGEL on vLLM-Omni: the API root, e.g. http://127.0.0.1:8001/v1")
    parser.add_argument("--omni-model", default="ByteDance-Seed/BAGEL-7B-MoT", help="the model the server serves")
    parser.add_argument("--teacher-model", help="teacher=vllm: a Hub id or a local folder (Qwen2.5-VL)")
    parser.add_argument("--prompts", type=int, default=8, help="how many prompts (1..8)")
    parser.add_argument("--size", type=int, default=1024, help="square image side (multiple of 16, 256..1024)")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps")
    parser.add_argument("--seed", type=int, default=0, help="prompt i is drawn with seed + i")
    parser.add_argument("--think", action="store_true", help="in-process BAGEL writes its plan first")
    parser.add_argument("--same-max", type=float, default=1.0,
                        help="largest mean pixel difference (0..255) two draws with one seed may have")
    parser.add_argument("--differ-min", type=float, default=5.0,
                        help="smallest mean pixel difference (0..255) two seeds' images must have")
    parser.add_argument("--out", default="bagel_smoke", help="folder for the images")
    args = parser.parse_args(argv)
    if bool(args.repo_dir) != bool(args.model_dir):
        parser.error("in-process BAGEL needs both --repo-dir and --model-dir")
    if not (args.repo_dir or args.omni_url or args.teacher_model):
        parser.error("nothing to run: give --repo-dir/--model-dir, --omni-url and/or --teacher-model")
    if not 1 <= args.prompts <= len(PROMPTS):
        parser.error(f"--prompts must be within 1..{len(PROMPTS)}")
    if args.size % 16 or not 256 <= args.size <= 1024:
        parser.error("--size must be a multiple of 16 within 256..1024")
    if args.steps < 1 or args.same_max < 0 or args.differ_min <= args.same_max:
        parser.error("--steps must be at least 1 and --differ-min larger than --same-max")
    return args


def pixels(image: bytes | Image.Image) -> np.ndarray:
    if isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def mean_difference(a: bytes | Image.Image, b: bytes | Image.Image) -> float:
    """Mean absolute pixel difference (0..255); infinite when the sizes differ."""
    pa, pb = pixels(a), pixels(b)
    return float("inf") if pa.shape != pb.shape else float(np.abs(pa - pb).mean())


def seed_problems(first, repeat, other, same_max: float, differ_min: float) -> list[str]:
    """What is wrong with three draws of one prompt: seed s, seed s again, another seed. Empty: all good."""
    problems = []
    same, differ = mean_difference(first, repeat), mean_difference(first, other)
    if same > same_max:
        problems.append(f"the same seed drew a different image (mean pixel difference {same:.2f} > {same_max:g})")
    if differ < differ_min:
        problems.append(f"another seed drew the same image (mean pixel difference {differ:.2f} < {differ_min:g}): "
                        "the seed does not reach the stage that draws")
    return problems


@dataclass
class PathResult:
    name: str
    seconds: list[float]
    gpu_gb: float | None
    problems: list[str]

    def line(self) -> str:
        per = sum(self.seconds) / len(self.seconds) if self.seconds else float("nan")
        memory = f"{self.gpu_gb:.1f} GB GPU" if self.gpu_gb is not None else "GPU memory: not visible here"
        verdict = "ok" if not self.problems else "FAILED: " + "; ".join(self.problems)
        return f"{self.name}: {len(self.seconds)} x {per:.1f} s each, {memory}; {verdict}"


def gpu_gb(torch, peak: bool) -> float | None:
    """This process's peak allocation (in-process models), or the device-wide use (a server on this GPU)."""
    if torch is None or not torch.cuda.is_available():
        return None
    if peak:
        return torch.cuda.max_memory_allocated() / 1024 ** 3
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 1024 ** 3


def try_torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


async def draw_all(backend, prompts: Sequence[str], seed: int, size: int, out: Path, name: str):
    """Each prompt with its seed, then prompt 1 with its seed again and with another: images and seconds."""
    jobs = [(p, seed + i) for i, p in enumerate(prompts)] + [(prompts[0], seed), (prompts[0], seed + OTHER_SEED_OFFSET)]
    images, seconds = [], []
    for i, (prompt, s) in enumerate(jobs):
        started = time.perf_counter()
        result = await backend.generate(GenerateRequest(prompt=prompt, seed=s, width=size, height=size))
        seconds.append(time.perf_counter() - started)
        if isinstance(result, Reject):
            raise RuntimeError(f"{name} rejected prompt {i + 1}: {result.reason}: {result.detail}")
        image = result.image if isinstance(result.image, Image.Image) else Image.open(io.BytesIO(result.image))
        image.save(out / f"{name}-{i:02d}-seed{s}.png")
        images.append(result)
    return images, seconds


def run_image_path(name: str, overrides: list[str], args, torch) -> tuple[PathResult, list[GeneratedImage]]:
    from curation.backends.factory import build_backend

    node = load_config("config", overrides).generator
    backend = build_backend("generator", node)
    backend.check()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    async def go():
        try:
            return await draw_all(backend, PROMPTS[:args.prompts], args.seed, args.size, out, name)
        finally:
            await backend.aclose()

    images, seconds = asyncio.run(go())
    first, repeat, other = images[0].image, images[-2].image, images[-1].image
    result = PathResult(name, seconds, gpu_gb(torch, peak=name == "bagel"),
                        seed_problems(first, repeat, other, args.same_max, args.differ_min))
    del backend
    gc.collect()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()  # the next path loads its own model
    return result, images[:args.prompts]


def run_teacher(args, drawn: list[GeneratedImage], torch, overrides: Sequence[str] | None = None) -> PathResult:
    """`overrides` pick the teacher (default: teacher=vllm with --teacher-model; tests pass another)."""
    from curation.backends.factory import build_backend

    chosen = list(overrides or ["teacher=vllm", f"teacher.model={args.teacher_model}"])
    cfg = load_config("config", [*chosen, f"seed={args.seed}"])
    teacher = build_backend("teacher", cfg.teacher)
    teacher.check()
    images = [ImageInput.from_pil(g.image if isinstance(g.image, Image.Image) else Image.open(io.BytesIO(g.image)))
              for g in drawn] or [ImageInput.from_pil(Image.new("RGB", (args.size, args.size), (120, 90, 60)))]
    prompts = PROMPTS[:len(images)]
    # The initial-thinking stage's own prompt template, as a run sends it.
    from curation.pipeline.stages.initial_thinking import InitialThinking
    template = InitialThinking().chat_template

    def ask(prompt: str, image: ImageInput, seed: int):
        return teacher.chat(ChatRequest(template, {"prompt": prompt}, {"hq_image": image}, seed))

    async def go():
        try:
            started = time.perf_counter()
            texts = await asyncio.gather(*(ask(p, im, args.seed + i) for i, (p, im) in enumerate(zip(prompts, images))))
            wall = time.perf_counter() - started
            again = await ask(prompts[0], images[0], args.seed)
            return texts, wall, again
        finally:
            await teacher.aclose()

    texts, wall, again = asyncio.run(go())
    problems = [f"prompt {i + 1} rejected: {t.reason}" for i, t in enumerate(texts) if isinstance(t, Reject)]
    if not problems and (isinstance(again, Reject) or again.text != texts[0].text):
        problems.append("the same seed wrote a different thinking (vLLM's batch composition can do this; "
                        "compare the two by eye)")
    if not problems:
        print("first thinking:\n" + texts[0].text)
    return PathResult(chosen[0], [wall / len(texts)] * len(texts), gpu_gb(torch, peak=False), problems)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch = try_torch()
    guidance = [f"generator.guidance.num_timesteps={args.steps}", f"generator.width={args.size}",
                f"generator.height={args.size}"]
    results, drawn = [], []
    try:
        if args.repo_dir:
            result, drawn = run_image_path("bagel", ["generator=bagel", f"generator.repo_dir={args.repo_dir}",
                                                     f"generator.model_dir={args.model_dir}",
                                                     f"generator.think={str(args.think).lower()}", *guidance],
                                           args, torch)
            results.append(result)
            print(result.line())
        if args.omni_url:
            result, images = run_image_path("bagel_omni", ["generator=bagel_omni",
                                                           f"generator.base_url={args.omni_url}",
                                                           f"generator.model={args.omni_model}", *guidance],
                                            args, torch)
            drawn = drawn or images
            results.append(result)
            print(result.line())
        if args.teacher_model:
            results.append(run_teacher(args, drawn, torch))
            print(results[-1].line())
    except BackendUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a path rejected a prompt: that check failed
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0 if all(not r.problems for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
