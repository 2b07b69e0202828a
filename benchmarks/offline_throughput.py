"""Offline world throughput, and the share of time spent encoding/decoding images.

    python benchmarks/offline_throughput.py [--n 48] [--sizes 256 1024]

For each image size it builds `recipe=improving_full` twice into fresh folders:
1. with every backend's concurrency at 1 — the time spent inside image encode/decode/probe is
   measured against the whole run's wall time (one thing at a time, so shares are exact);
2. with the default concurrency — the samples/second a user gets on this machine.
It prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from curation.core import images
from curation.run import main

_lock = threading.Lock()
_spent = {"encode": 0.0, "decode": 0.0, "probe": 0.0}


def _timed(name, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                _spent[name] += time.perf_counter() - start

    return wrapper


def _instrument() -> None:
    for name in _spent:
        setattr(images, name, _timed(name, getattr(images, name)))


def _run(tmp: Path, size: int, n: int, serial: bool) -> float:
    overrides = ["recipe=improving_full", f"n={n}", f"image_size={size}", f"out={tmp / 'ds'}",
                 f"cache={tmp / 'cache'}", "run.progress_interval_s=3600"]
    if serial:
        overrides += ["run.max_in_flight=1"] + [f"{role}.concurrency=1" for role in ("reference", "teacher", "generator", "checker")]
    start = time.perf_counter()
    main(overrides)
    return time.perf_counter() - start


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    args = parser.parse_args()
    _instrument()
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            for key in _spent:
                _spent[key] = 0.0
            serial = _run(Path(tmp) / "serial", size, args.n, serial=True)
            codec = dict(_spent)
            parallel = _run(Path(tmp) / "parallel", size, args.n, serial=False)
        rows.append((size, args.n / serial, args.n / parallel, codec, serial))
    print(f"\noffline world, recipe=improving_full, n={args.n} (reference + teacher x2 + base model + checker)")
    print(f"{'size':>6} {'serial s/s':>11} {'parallel s/s':>13} {'encode':>8} {'decode':>8} {'probe':>8} {'codec total':>12} {'other':>7}")
    for size, s_rate, p_rate, codec, serial in rows:
        total = sum(codec.values())
        shares = {k: v / serial for k, v in codec.items()}
        print(f"{size:>6} {s_rate:>11.2f} {p_rate:>13.2f} {shares['encode']:>8.1%} {shares['decode']:>8.1%} "
              f"{shares['probe']:>8.1%} {total / serial:>12.1%} {1 - total / serial:>7.1%}")
    print("shares are of the serial run's wall time; s/s = accepted-or-rejected samples per second")


if __name__ == "__main__":
    main_cli()
