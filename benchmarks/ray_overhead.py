"""What `executor=ray` costs over the local executor on one machine.

    python benchmarks/ray_overhead.py [--n 100 400] [--teacher-requests 1024] [--latency 1.0] [--in-flight 64]

1. Offline world: `recipe=all` at each n, once with `executor=local`, once with `executor=ray`
   (a local Ray with this machine's CPUs, 2 walker actors), each with a fresh store: samples/s and
   their ratio; with two sizes, the cost per sample (the slope) apart from the cost once per run
   (actors starting): Ray's overhead where every stage is cheap CPU work.
2. Teacher requests: `recipe=initial_thinking` with `teacher=vllm_server` against a fake endpoint
   (tests/support/fake_openai.py, its own process) that answers after a fixed latency with no limit
   of its own. The reference images are made first by an untimed run, so the timed run makes only
   teacher calls: `teacher.concurrency` in flight in total, from this process or split over the
   Ray actors. Requests/s over the run's wall time, and the ideal (in flight / latency).

Ray's start-up is printed apart and not counted. One run each, on whatever machine runs it:
compare runs on a quiet machine (the load average is printed). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import ray  # noqa: E402

from curation.pipeline.ray_executor import RaySettings, connect  # noqa: E402
from curation.writer import manifest# noqa: E402
from curation.run import main  # noqa: E402
from tests.support.fake_openai import MODEL  # noqa: E402

QUIET = ["run.progress_interval_s=3600", "image_size=128"]


def timed(*overrides: str) -> tuple[float, Path]:
    started = time.perf_counter()
    out = main([*QUIET, *overrides])
    return time.perf_counter() - started, out


def offline(tmp: Path, sizes: list[int]) -> None:
    print("\n1. offline world, recipe=all (every stage cheap CPU work)")
    print(f"{'executor':>10} {'n':>6} {'seconds':>8} {'samples/s':>10} {'backend calls':>14}")
    seconds: dict[str, dict[int, float]] = {"local": {}, "ray": {}}
    for n in sizes:
        for name, extra in (("local", []), ("ray", ["executor=ray"])):
            tag = f"{name}-{n}"
            took, out = timed("recipe=all", f"n={n}", f"out={tmp / tag}", f"cache={tmp / (tag + '-cache')}", *extra)
            seconds[name][n] = took
            calls = sum(manifest.read(out)["run"]["backend_calls"].values())
            print(f"{name:>10} {n:>6} {took:>8.2f} {n / took:>10.2f} {calls:>14}", flush=True)
    for n in sizes:
        print(f"n={n}: ray / local samples/s {seconds['local'][n] / seconds['ray'][n]:.2f}")
    if len(sizes) >= 2:
        # Two sizes separate what Ray costs once per run (actors starting, models loading) from
        # what it costs per sample: the slope between them.
        lo, hi = min(sizes), max(sizes)
        slope = {k: (v[hi] - v[lo]) / (hi - lo) for k, v in seconds.items()}
        fixed = {k: seconds[k][lo] - slope[k] * lo for k in seconds}
        print(f"per sample (slope n={lo}..{hi}): local {slope['local'] * 1000:.1f} ms, "
              f"ray {slope['ray'] * 1000:.1f} ms (ratio {slope['ray'] / slope['local']:.2f}); "
              f"once per run: local {fixed['local']:.1f} s, ray {fixed['ray']:.1f} s")


def teacher_requests(tmp: Path, n: int, latency: float, in_flight: int, actors: int) -> None:
    server = subprocess.Popen([sys.executable, "-m", "tests.support.fake_openai", "--latency", str(latency),
                               "--no-inspect"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        base_url = f"http://127.0.0.1:{int(server.stdout.readline().split()[1])}/v1"
        teacher = ["teacher=vllm_server", f"teacher.base_url={base_url}", f"teacher.model={MODEL}",
                   f"teacher.concurrency={in_flight}"]
        ideal = in_flight / latency
        print(f"\n2. teacher requests: n={n}, fake endpoint answering in {latency:g} s, {in_flight} in flight "
              f"in total (ideal {ideal:.1f} req/s)")
        print(f"{'executor':>22} {'seconds':>8} {'req/s':>8} {'ratio':>6}")
        for name, slug, extra in (("local", "local", []),
                                  (f"ray, {actors} actors", "ray", ["executor=ray", f"executor.actors={actors}",
                                                                    f"executor.batch_size={2 * in_flight // actors}"])):
            common = ["recipe=initial_thinking", f"n={n}", f"cache={tmp / ('t-' + slug + '-cache')}", *extra]
            timed(*common, f"out={tmp / ('t-' + slug + '-warm')}")  # reference images, offline teacher: untimed
            seconds, out = timed(*common, *teacher, f"out={tmp / ('t-' + slug)}")
            calls = manifest.read(out)["run"]["backend_calls"].get("initial_thinking", 0)
            rate = calls / seconds
            print(f"{name:>22} {seconds:>8.2f} {rate:>8.1f} {rate / ideal:>6.2f}   ({calls} requests)", flush=True)
    finally:
        server.kill()
        server.wait()


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--teacher-requests", type=int, default=1024)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--actors", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    started = time.perf_counter()
    connect(RaySettings())  # a local Ray whose workers import this checkout
    print(f"Ray start-up (not counted below): {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        offline(Path(tmp), args.n)
        teacher_requests(Path(tmp), args.teacher_requests, args.latency, args.in_flight, args.actors)
    ray.shutdown()


if __name__ == "__main__":
    run()
