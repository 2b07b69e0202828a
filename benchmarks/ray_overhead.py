"""What `executor=ray` costs over the local executor on one machine.

    python benchmarks/ray_overhead.py [--n 200] [--teacher-requests 1024] [--latency 1.0] [--in-flight 64]

1. Offline world: `recipe=all` at n samples, once with `executor=local`, once with `executor=ray`
   (a local Ray with this machine's CPUs, 2 walker actors), each with a fresh store: samples/s and
   their ratio, i.e. the overhead of Ray per sample where every stage is cheap CPU work.
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

from curation.publish import manifest  # noqa: E402
from curation.run import main  # noqa: E402
from tests.support.fake_openai import MODEL  # noqa: E402

QUIET = ["run.progress_interval_s=3600", "image_size=128"]


def timed(*overrides: str) -> tuple[float, Path]:
    started = time.perf_counter()
    out = main([*QUIET, *overrides])
    return time.perf_counter() - started, out


def offline(tmp: Path, n: int) -> None:
    print(f"\n1. offline world, recipe=all n={n} (every stage cheap CPU work)")
    print(f"{'executor':>10} {'seconds':>8} {'samples/s':>10} {'backend calls':>14}")
    rates = {}
    for name, extra in (("local", []), ("ray", ["executor=ray"])):
        seconds, out = timed("recipe=all", f"n={n}", f"out={tmp / name}", f"cache={tmp / (name + '-cache')}", *extra)
        rates[name] = n / seconds
        calls = sum(manifest.read(out)["run"]["backend_calls"].values())
        print(f"{name:>10} {seconds:>8.2f} {rates[name]:>10.2f} {calls:>14}", flush=True)
    print(f"ray / local samples/s: {rates['ray'] / rates['local']:.2f}; Ray adds "
          f"{(1 / rates['ray'] - 1 / rates['local']) * 1000:.0f} ms per sample on this machine")


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
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--teacher-requests", type=int, default=1024)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--actors", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    print(f"Ray start-up (not counted below): {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        offline(Path(tmp), args.n)
        teacher_requests(Path(tmp), args.teacher_requests, args.latency, args.in_flight, args.actors)
    ray.shutdown()


if __name__ == "__main__":
    run()
