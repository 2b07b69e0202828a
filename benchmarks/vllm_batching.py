"""Continuous vs lock-step batching of `teacher=vllm`, on a stand-in engine (no GPU, no vLLM).

    python benchmarks/vllm_batching.py [--requests 2048] [--slots 64] [--in-flight 128] [--step-ms 0]

The stand-in (`tests/support/stand_in_vllm.py`) schedules like vLLM: at each step, waiting requests
join the running batch while it has fewer than `--slots` (`max_num_seqs`), every running request
decodes one token, and a finished one leaves at once. Answer lengths vary as thinkings do: drawn
from a log-normal around `--median-tokens` (an improving thinking is several times longer than a
plain one), the same draws for both ways.

- **continuous**: the `teacher=vllm` backend itself (`VllmTeacher.initial_thinking` →
  `AsyncLLM.generate` per request), `--in-flight` requests at a time as the executor keeps them.
- **lock-step**: the way this backend worked before: requests that arrive while a batch runs wait;
  the next batch (up to `--slots`) starts when the longest answer of the current one is done —
  the same engine, fed one batch at a time.

It prints engine steps, utilisation (busy slots over slots × steps: the share of the GPU's batch
that decoded something) and the speed-up. Nothing is asserted; step counts are deterministic, the
wall seconds are not (a step is `--step-ms` of real time so arrivals interleave with steps).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from pathlib import Path

import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import stand_in_vllm  # noqa: E402


def lengths(n: int, median: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [max(8, min(2048, int(median * math.exp(rng.gauss(0, 0.8))))) for _ in range(n)]


def teacher(slots: int, in_flight: int):
    from curation.backends.teachers.vllm_inprocess import VllmTeacher

    cfg = yaml.safe_load((REPO / "recipes/teacher/vllm.yaml").read_text())
    cfg.pop("_target_")
    cfg["engine"] = {"max_num_seqs": slots}
    cfg.update(model="stand-in/qwen2.5-vl", concurrency=in_flight)
    backend = VllmTeacher(**cfg)
    backend._processor = stand_in_vllm.ChatTemplate()  # the stand-in model has no processor to load
    backend.check()
    return backend


async def continuous(n: int, slots: int, in_flight: int, decode: list[int]) -> stand_in_vllm.StandInEngine:
    from curation.backends.base import ChatRequest, ImageInput
    from curation.pipeline.stages.initial_thinking import InitialThinking

    backend = teacher(slots, in_flight)
    engine = backend._engine
    image = ImageInput.from_pil(Image.new("RGB", (112, 112)))
    limit = asyncio.Semaphore(in_flight)
    template = InitialThinking().chat_template

    async def one(i: int) -> None:
        async with limit:
            await backend.chat(ChatRequest(template, {"prompt": f"prompt {i}"}, {"hq_image": image}, seed=i))

    await asyncio.gather(*(one(i) for i in range(n)))
    await backend.aclose()
    return engine


async def lock_step(n: int, slots: int, in_flight: int, decode: list[int]) -> stand_in_vllm.StandInEngine:
    """Batches of what has arrived, each run to its longest answer before the next one starts."""
    engine = stand_in_vllm.StandInEngine(stand_in_vllm.AsyncEngineArgs(max_num_seqs=slots))
    params = [stand_in_vllm.SamplingParams(max_tokens=4096, seed=i) for i in range(n)]
    queue: list[int] = []
    arrived = asyncio.Event()
    done: dict[int, asyncio.Future] = {}

    async def generate(i: int) -> None:
        async for _ in engine.generate({"prompt": f"prompt {i}"}, params[i], f"r{i}"):
            pass

    async def batches() -> None:
        while len(done) < n or queue:
            if not queue:
                arrived.clear()
                await arrived.wait()
            batch, queue[:] = queue[:slots], queue[slots:]
            await asyncio.gather(*(generate(i) for i in batch))  # the batch ends with its longest answer
            for i in batch:
                done[i].set_result(None)

    async def sample(i: int, limit: asyncio.Semaphore) -> None:
        async with limit:
            done[i] = asyncio.get_running_loop().create_future()
            queue.append(i)
            arrived.set()
            await done[i]

    runner = asyncio.create_task(batches())
    limit = asyncio.Semaphore(in_flight)
    await asyncio.gather(*(sample(i, limit) for i in range(n)))
    runner.cancel()
    engine.shutdown()
    return engine


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2048)
    parser.add_argument("--slots", type=int, default=64, help="the engine's max_num_seqs")
    parser.add_argument("--in-flight", type=int, default=128, help="teacher.concurrency")
    parser.add_argument("--median-tokens", type=int, default=300)
    parser.add_argument("--step-ms", type=float, default=0.0, help="real time per engine step (0: one event-loop pass)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    stand_in_vllm.install()
    decode = lengths(args.requests, args.median_tokens, args.seed)
    stand_in_vllm.StandInEngine.step_s = args.step_ms / 1000
    # Decode steps by request: the seed is the request's index in both ways.
    stand_in_vllm.StandInEngine.answer_tokens = staticmethod(lambda request_id, text, seed: decode[seed])
    print(f"{args.requests} requests, answers of {min(decode)}-{max(decode)} tokens (median "
          f"{sorted(decode)[len(decode) // 2]}, total {sum(decode)}), {args.slots} slots, {args.in_flight} in flight")
    print(f"{'way':>11} {'steps':>7} {'utilisation':>11} {'tokens/step':>11} {'wall s':>7}")
    results = {}
    for name, way in (("lock-step", lock_step), ("continuous", continuous)):
        started = time.perf_counter()
        engine = asyncio.run(way(args.requests, args.slots, args.in_flight, decode))
        wall = time.perf_counter() - started
        assert len(engine.finished) == args.requests and engine.busy_slot_steps == sum(decode)
        results[name] = engine.step
        print(f"{name:>11} {engine.step:>7} {engine.utilisation:>11.2f} {engine.busy_slot_steps / engine.step:>11.1f} "
              f"{wall:>7.1f}", flush=True)
    print(f"continuous batching needs {results['continuous'] / results['lock-step']:.2f}x the steps of lock-step "
          f"(speed-up {results['lock-step'] / results['continuous']:.2f}x at the same step time)")


if __name__ == "__main__":
    main()
