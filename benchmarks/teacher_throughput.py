"""Teacher client throughput: is the server the bottleneck, or the client?

    python benchmarks/teacher_throughput.py [--requests 4096] [--latency 0.2] [--in-flight 64 256 1024]
                                            [--image-size 112] [--stored-format png]
    python benchmarks/teacher_throughput.py --compare-clients [--in-flight 256] [--clients curation.backends.http ...]

A fake OpenAI-compatible endpoint (`tests/support/fake_openai.py`, its own process) answers every
chat request after a fixed latency, with no concurrency limit of its own. For each in-flight
count, the initial-thinking stage (`InitialThinking.run`, as the executor calls it, with the run's
stage settings) answers `--requests` samples through the `teacher=vllm_server` backend: each
sample has its own prompt, seed and stored image (a distinct image per request, in a real `Store`;
PNG as a run keeps generated images, or `--stored-format jpeg` as sources often keep theirs),
which the stage loads and the teacher sends as one image part; the stage validates each answer.
The default 112×112 is on the 28-pixel grid, so the images go as stored; another size (say 128)
is resized and JPEG-encoded, once per image. It prints achieved
requests/s, the ideal (in flight / latency), their ratio, and the client's CPU per request (user +
system time of this process, all threads, divided by requests), and how much of that went into
preparing images (`prepare_image`; 112² and 128² are prepared on the event loop, so the thread's
CPU time is exact). Connections are opened by a warm-up round (its own images) that is not timed.

`--compare-clients` sends one fixed request body (with one image part) through other HTTP clients
too — `curation.backends.http`, bare aiohttp, httpx2 and the `openai` SDK (its default and its aiohttp
transport) — which is how the HTTP layer was chosen.

The machine's load average is printed too: on a shared 2-core machine, another busy process
lowers the ratio, so compare runs made on a quiet machine. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curation.core import images  # noqa: E402
from curation.backends.teachers.vllm_server import VllmServerTeacher  # noqa: E402
from curation.core.images import ImageRef  # noqa: E402
from curation.core.records import StageOutput  # noqa: E402
from curation.pipeline.stages.base import StageContext  # noqa: E402
from curation.pipeline.stages.initial_thinking import InitialThinking  # noqa: E402
from curation.pipeline.store import Store  # noqa: E402
from tests.support.fake_openai import MODEL  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_images(count: int, size: int = 112, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(count):
        a, b, c = rng.integers(1, 255, 3)
        arr = np.stack([(xx * a // size), (yy * b // size), ((xx + yy) * c // (2 * size))], -1)
        out.append(Image.fromarray((arr + rng.integers(0, 16, arr.shape)).clip(0, 255).astype("uint8")))
    return out


async def drive(call: Callable[[int], Awaitable[object]], in_flight: int, n: int) -> tuple[float, float, list]:
    """`n` calls, `in_flight` at a time, after one untimed call per connection: (wall s, CPU s, results)."""
    results: list = []

    async def worker(indices: list[int]) -> None:
        while indices:
            results.append(await call(indices.pop()))

    await asyncio.gather(*(worker([n + i]) for i in range(in_flight)))  # warm-up: open the connections
    results.clear()
    queue = list(range(n))[::-1]
    started, cpu = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(worker(queue) for _ in range(in_flight)))
    return time.perf_counter() - started, cpu_seconds() - cpu, results


# ----------------------------------------------------------------------------- the teacher backend


def teacher(base_url: str, in_flight: int) -> VllmServerTeacher:
    cfg = yaml.safe_load((REPO / "recipes/teacher/vllm_server.yaml").read_text())
    cfg.pop("_target_")
    cfg.update(base_url=base_url, model=MODEL, concurrency=in_flight)
    cfg["http"]["timeout_s"] = 60
    return VllmServerTeacher(**cfg)


def store_images(store: Store, count: int, size: int, fmt: str = "png") -> list[ImageRef]:
    """`count` distinct images, encoded as a run stores them, in `store`."""
    refs = []
    for start in range(0, count, 64):
        for picture in make_images(min(64, count - start), size, seed=start):
            refs.append(store.put_image_bytes(images.encode(picture, fmt)))
    return refs


async def measure_teacher(base_url: str, in_flight: int, n: int, store: Store, refs: list[ImageRef]) -> dict:
    t = teacher(base_url, in_flight)
    image_cpu = 0.0
    prepare = t.prepare_image

    async def timed_prepare(image):  # a 112² or 128² image is prepared inline, on this thread: thread_time is exact
        nonlocal image_cpu
        start = time.thread_time()
        prepared = await prepare(image)
        image_cpu += time.thread_time() - start
        return prepared

    t.prepare_image = timed_prepare
    stage = InitialThinking()
    settings = dict(InitialThinking.defaults)

    async def call(i: int):
        ctx = StageContext(backend=t, store=store, seed=i, settings=settings)
        result = await stage.run({"prompt": f"prompt number {i}: a red ball left of a blue cube",
                                  "hq_image": refs[i]}, ctx)
        # Keep only whether it was accepted, as a run keeps nothing once a result is stored:
        # thousands of retained lineage dicts would make the garbage collector, not the client, the cost.
        return isinstance(result, StageOutput)

    wall, cpu, outputs = await drive(call, in_flight, n)
    await t.client.aclose()
    # Image CPU is the same for warm-up and timed requests: averaged over all of them.
    return {"wall": wall, "cpu_ms": cpu / n * 1000, "image_ms": image_cpu / (n + in_flight) * 1000,
            "valid": sum(outputs)}


# ----------------------------------------------------------------------------- other clients, one fixed body


def fixed_body(picture: Image.Image) -> dict:
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=90)
    uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"model": MODEL, "max_tokens": 2048, "temperature": 0.7, "top_p": 0.9, "seed": 1, "messages": [
        {"role": "system", "content": "You are an expert art director."},
        {"role": "user", "content": [{"type": "text", "text": "Prompt: a red ball left of a blue cube. " * 8},
                                     {"type": "image_url", "image_url": {"url": uri}},
                                     {"type": "text", "text": "Write the plan inside <think> tags. " * 8}]}]}


async def measure_client(kind: str, base_url: str, in_flight: int, n: int, body: dict) -> dict:
    if kind == "curation.backends.http":
        from curation.backends.http import HttpClient, HttpSettings

        client = HttpClient(HttpSettings(base_url, timeout_s=60), max_connections=in_flight)
        send, close = (lambda i: client.post_json("/chat/completions", body)), client.aclose
    elif kind == "aiohttp (bare)":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight),
                                        timeout=aiohttp.ClientTimeout(total=60))

        async def send(i):
            async with session.post(base_url + "/chat/completions", data=json.dumps(body).encode(),
                                    headers={"Content-Type": "application/json"}) as response:
                return json.loads(await response.read())

        close = session.close
    elif kind == "httpx2":
        import httpx2

        session = httpx2.AsyncClient(timeout=60, limits=httpx2.Limits(max_connections=in_flight,
                                                                     max_keepalive_connections=in_flight))

        async def send(i):
            response = await session.post(base_url + "/chat/completions", content=json.dumps(body).encode(),
                                          headers={"Content-Type": "application/json"})
            return response.json()

        close = session.aclose
    else:
        import openai

        http_client = openai.DefaultAioHttpClient() if kind == "openai (aiohttp)" else None
        sdk = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60,
                                 **({"http_client": http_client} if http_client else {}))
        send, close = (lambda i: sdk.chat.completions.create(**body)), sdk.close

    async def call(i):
        await send(i)  # the answer is dropped, as a run drops it once stored

    wall, cpu, _ = await drive(call, in_flight, n)
    await close()
    return {"wall": wall, "cpu_ms": cpu / n * 1000}


# ----------------------------------------------------------------------------- main

CLIENTS = ("curation.backends.http", "aiohttp (bare)", "httpx2", "openai (default)", "openai (aiohttp)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4096)
    parser.add_argument("--latency", type=float, default=0.2, help="the fake server's seconds per answer")
    parser.add_argument("--in-flight", type=int, nargs="+", default=None, help="default: 64 256 1024 (256 to compare)")
    parser.add_argument("--image-size", type=int, default=112, help="side of the stored images (112: on the grid)")
    parser.add_argument("--stored-format", choices=("png", "jpeg"), default="png")
    parser.add_argument("--compare-clients", action="store_true")
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=CLIENTS,
                        help="with --compare-clients: which clients (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="with --compare-clients: rows per client, interleaved")
    args = parser.parse_args(argv)
    in_flights = args.in_flight or ([256] if args.compare_clients else [64, 256, 1024])

    server = subprocess.Popen([sys.executable, "-m", "tests.support.fake_openai", "--latency", str(args.latency),
                               "--no-inspect"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        base_url = f"http://127.0.0.1:{int(server.stdout.readline().split()[1])}/v1"
        print(f"fake endpoint: {args.latency:g} s per answer; {args.requests} requests per row, one image part each; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        if args.compare_clients:
            body = fixed_body(make_images(1)[0])
            print(f"{'client':>18} {'in flight':>9} {'req/s':>8} {'ideal':>8} {'ratio':>6} {'client CPU/req':>15}")
            for kind in [k for _ in range(args.repeat) for k in args.clients]:
                for in_flight in in_flights:
                    r = asyncio.run(measure_client(kind, base_url, in_flight, args.requests, body))
                    rate, ideal = args.requests / r["wall"], in_flight / args.latency
                    print(f"{kind:>18} {in_flight:>9} {rate:>8.1f} {ideal:>8.1f} {rate / ideal:>6.2f} "
                          f"{r['cpu_ms']:>12.3f} ms", flush=True)
        else:
            with tempfile.TemporaryDirectory(prefix="teacher-bench-") as tmp:
                store = Store(tmp)
                refs = store_images(store, args.requests + max(in_flights), args.image_size, args.stored_format)
                print(f"{len(refs)} distinct stored images of {args.image_size}x{args.image_size} "
                      f"({args.stored_format}, {sum(r.nbytes for r in refs) / len(refs) / 1024:.1f} KB on average)")
                print(f"{'in flight':>9} {'requests':>8} {'req/s':>8} {'ideal':>8} {'ratio':>6} "
                      f"{'client CPU/req':>15} {'of it: image':>13} {'valid':>6}")
                for in_flight in in_flights:
                    r = asyncio.run(measure_teacher(base_url, in_flight, args.requests, store, refs))
                    rate, ideal = args.requests / r["wall"], in_flight / args.latency
                    print(f"{in_flight:>9} {args.requests:>8} {rate:>8.1f} {ideal:>8.1f} {rate / ideal:>6.2f} "
                          f"{r['cpu_ms']:>12.3f} ms {r['image_ms']:>10.3f} ms {r['valid']:>6}", flush=True)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
