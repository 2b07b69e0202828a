"""What the live page and /metrics cost a run: offline `recipe=all`, page off vs on and watched.

    python benchmarks/live_overhead.py [--n 2000] [--image-size 256] [--repeat 3] [--poll-s 1.0]

Three measurements, printed as ratios; nothing is asserted:

1. Whole runs, interleaved (off, on, off, on, ...), each in a fresh process with a fresh out and
   cache (so both compute every result). "on" runs serve the page (`run.live_port=0`) and are
   watched the whole time: a thread fetches /api/state and /metrics every `--poll-s` seconds (a
   browser tab and a Prometheus scraping every second: busier than the usual 15 s). Compared:
   the run's own wall time (the manifest's `run.elapsed_s`) and the process's, best and median
   of each arm, and each "on" run against the "off" run just before it (paired: a host whose
   speed drifts during the benchmark moves both runs of a pair alike). On a machine others share,
   the spread between runs of one arm is printed too: an overhead below it is not measurable there.
2. The parts, in this process, in CPU seconds (`time.process_time`: on a machine others load,
   wall-clock timings of microsecond work measure the scheduler, not the code): the walker's two
   calls per sample (`on_result` per backend call, `on_outcome` per sample) over the outcomes of
   the last run, and one page poll plus one scrape (`snapshot()` + JSON + `generate_latest`) at
   that run's size; per sample against the run's CPU seconds per sample, and per second of polling
   against one core.
3. Within each watched run: what the page added, against that run's wall time. The server runs
   on a thread of its own, so its CPU time (the run logs it when the page closes) is all the
   serving took, and the longest it can have held the GIL from the run's loop; the walker's calls
   are (2) times the samples. Unlike (1), host noise does not move this figure: on a 2-core VM
   with 33 % steal, (1) spread 62 % between runs of one arm.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def one_run(tmp: Path, n: int, image_size: int, live: bool, poll_s: float) -> dict:
    out, cache = tmp / "ds", tmp / "cache"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "curation.run", "recipe=all", f"n={n}", f"image_size={image_size}", f"out={out}",
           f"cache={cache}", "run.progress_interval_s=30", "run.log_format=jsonl"]
    if live:
        cmd += ["run.live_port=0", "run.live_linger_s=0"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    started = time.perf_counter()
    cpu_before = os.times()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    urls: "queue.Queue[str]" = queue.Queue()
    polls = {"state": 0, "metrics": 0, "errors": 0}
    closed: dict = {}

    def read_stderr() -> None:
        for line in proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "live_page":
                urls.put(event["url"])
            elif event.get("event") == "live_page_closed":
                closed.update(event)

    def watch() -> None:
        url = urls.get()
        while proc.poll() is None:
            for path, key in (("api/state", "state"), ("metrics", "metrics")):
                try:
                    with urllib.request.urlopen(url + path, timeout=10) as response:
                        response.read()
                    polls[key] += 1
                except OSError:
                    polls["errors"] += 1  # the run has just stopped serving
            time.sleep(poll_s)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    watcher = threading.Thread(target=watch, daemon=True) if live else None
    if watcher:
        watcher.start()
    rc = proc.wait()
    wall = time.perf_counter() - started
    cpu_after = os.times()
    cpu = (cpu_after.children_user + cpu_after.children_system) - (cpu_before.children_user + cpu_before.children_system)
    if watcher:
        urls.put("")  # a run that never printed its page would leave the watcher waiting
    reader.join(timeout=10)
    if live and "server_cpu_s" not in closed:
        raise SystemExit("the run never said what its live server cost (no live_page_closed event)")
    if rc != 0:
        raise SystemExit(f"the run failed (exit {rc}): {' '.join(cmd)}")
    doc = json.loads((out / "manifest.json").read_text())
    return {"elapsed_s": doc["run"]["elapsed_s"], "process_s": wall, "cpu_s": cpu, "polls": polls,
            "samples": sum(m["sourced"] for m in doc["modes"].values()) // len(doc["modes"]), "out": out,
            "cache": cache, "server_cpu_s": closed.get("server_cpu_s"), "requests": closed.get("requests")}


def parts(last: dict, poll_s: float, seconds_per_sample: float) -> float:
    """The walker's calls and one poll + scrape, timed in this process over the last run's outcomes."""
    from omegaconf import OmegaConf
    from prometheus_client import generate_latest

    from curation.core.config import load_config
    from curation.core.progress import Progress
    from curation.monitor import cost_model
    from curation.monitor.metrics import registry_for
    from curation.monitor.state import LiveState

    from curation.backends.factory import configured_roles
    from curation.pipeline.plan import build_plan
    from curation.pipeline.store import Store
    from curation.core.records import StageOutput

    cfg = load_config("config", ["recipe=all", f"n={last['samples']}"])
    plan = build_plan(dict(cfg.recipe.modes), source_provides_images=False,
                      improving_initial_thinking=cfg.improving_initial_thinking,
                      settings=OmegaConf.to_container(cfg.get("stages") or {}, resolve=True),
                      roles=configured_roles(cfg))  # as curation.run builds it
    store = Store(last["cache"])
    run_key = store._db.execute("SELECT plan_key FROM outcomes LIMIT 1").fetchone()[0]
    outcomes = list(store.iter_outcomes(run_key))
    identities = {r: {"id": f"offline-world/{r}"} for r in ("teacher", "generator", "reference", "checker")}
    state = LiveState(plan=plan, progress=Progress(["gates", *(s.name for s in plan.stages)], interval=1e9),
                      summaries=dict, cost=cost_model(cfg, identities, plan))
    registry = registry_for(state, "all")
    result = StageOutput({})
    stages = [s.name for s in plan.stages if s.role]
    start = time.process_time()
    for outcome in outcomes:
        for stage in stages:
            state.on_result(stage, 0.01, result)
        state.on_outcome(outcome)
    walker_s = (time.process_time() - start) / len(outcomes)
    rounds = 50
    start = time.process_time()
    for _ in range(rounds):
        json.dumps(state.snapshot(), default=str)
        generate_latest(registry)
    poll = (time.process_time() - start) / rounds
    store.close()
    print(f"\nparts, over the {len(outcomes)} outcomes of the last run ({len(stages)} backend stages each):")
    print(f"  walker calls per sample: {walker_s * 1e6:.1f} µs CPU = {walker_s / seconds_per_sample:.5%} "
          f"of the run's {seconds_per_sample * 1000:.1f} ms CPU per sample")
    print(f"  one poll + one scrape: {poll * 1000:.2f} ms CPU; every {poll_s:g} s = {poll / poll_s:.3%} of one core")
    print(f"  together, watched every {poll_s:g} s: {walker_s / seconds_per_sample + poll / poll_s:.3%} "
          f"(the run's process uses at least one core)")
    return walker_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--poll-s", type=float, default=1.0)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    root = Path(tempfile.mkdtemp(prefix="live-overhead-"))
    try:
        for i in range(args.repeat):
            for arm in ("off", "on"):
                run = one_run(root / arm, args.n, args.image_size, arm == "on", args.poll_s)
                runs[arm].append(run)
                extra = f", watched: {run['polls']['state']} page polls, {run['polls']['metrics']} scrapes" \
                    if arm == "on" else ""
                print(f"  run {i + 1} {arm:>3}: elapsed {run['elapsed_s']:.1f} s, process {run['process_s']:.1f} s, "
                      f"CPU {run['cpu_s']:.1f} s{extra}",
                      flush=True)
        print(f"\nrecipe=all n={args.n} image_size={args.image_size}, {args.repeat} runs per arm, interleaved "
              f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        for key, name in (("elapsed_s", "run wall time (manifest)"), ("process_s", "process wall time"),
                          ("cpu_s", "process CPU time")):
            off = [r[key] for r in runs["off"]]
            on = [r[key] for r in runs["on"]]
            spread = (max(off) - min(off)) / min(off)
            print(f"  {name}: off best {min(off):.1f} s median {statistics.median(off):.1f} s; "
                  f"on best {min(on):.1f} s median {statistics.median(on):.1f} s")
            paired = [b / a for a, b in zip(off, on)]  # each "on" against the "off" just before it
            print(f"    on/off ratio: best {min(on) / min(off):.4f}, median "
                  f"{statistics.median(on) / statistics.median(off):.4f} (spread within 'off': {spread:.1%}); "
                  f"paired {', '.join(f'{r:.3f}' for r in paired)}, median {statistics.median(paired):.4f}")
        best = min(runs["on"], key=lambda r: r["cpu_s"])
        walker_s = parts(runs["on"][-1], args.poll_s, best["cpu_s"] / best["samples"])
        # The bound that host noise cannot move: all the page adds to a run is the server thread's
        # work (its CPU time, which is also the longest it can hold the GIL) and the walker's calls.
        print("\nwhat the page added to each watched run, against that run's wall time:")
        shares = []
        for i, r in enumerate(runs["on"]):
            hooks = walker_s * r["samples"]
            share = (r["server_cpu_s"] + hooks) / r["elapsed_s"]
            shares.append(share)
            print(f"  run {i + 1}: server thread {r['server_cpu_s']:.2f} s CPU for {r['requests']} requests + "
                  f"walker calls {hooks:.2f} s = {share:.3%} of {r['elapsed_s']:.1f} s")
        print(f"  at most {max(shares):.3%} (goal <= 3%)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
