"""How a `recipe=all` build scales with n on the offline world (one run per n, same machine).

    python benchmarks/scale.py [--ns 1000 4000 16000] [--image-size 128] [--keep DIR]

For each n it runs `python -m curation.run recipe=all n=<n>` in a fresh process with a fresh
out/cache, and prints: wall seconds per sample, peak RSS of the process, seconds from the
process's start to the first backend result, emit seconds, and the store's size on disk. Emit is
compared with its bound: the time pyarrow alone takes to write the same shards (same tables,
same writer settings), each shard read back into memory first and only the write timed. The
last line extrapolates the per-sample figures to IRGL-300K. Ratios are printed; nothing is
asserted. (The image size changes the absolute figures, not how they scale; 128 px keeps n=16,000
within ~20 minutes on 2 cores.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curation.writer.emit import PARQUET_SETTINGS  # noqa: E402

# The child reports its own peak RSS once the run has returned: VmHWM, the high-water mark of its
# own memory map. (Not ru_maxrss: Linux carries it across exec from the forked parent, so a child
# of a benchmark that has just read big shards would report the parent's size.)
CHILD = """
import sys, json
from curation.run import main
main(sys.argv[1:])
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"maxrss_mb": hwm / 1024}))
"""


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pyarrow_write_seconds(out: Path, row_group_rows: int) -> tuple[float, int]:
    """Seconds to write every shard of `out` with pyarrow alone, and the bytes written."""
    spent, written = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for shard in sorted((out / "data").rglob("*.parquet")):
            table = pq.read_table(shard)
            target = Path(tmp) / shard.name
            start = time.perf_counter()
            pq.write_table(table, target, row_group_size=row_group_rows, **PARQUET_SETTINGS)
            spent += time.perf_counter() - start
            written += target.stat().st_size
            target.unlink()
    return spent, written


def one(n: int, image_size: int, root: Path) -> dict:
    out, cache = root / f"out-{n}", root / f"cache-{n}"
    args = ["recipe=all", f"n={n}", f"image_size={image_size}", f"out={out}", f"cache={cache}",
            "run.progress_interval_s=60"]
    start = time.monotonic()
    child = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - start
    if child.returncode != 0:
        raise SystemExit(f"n={n} failed:\n{child.stderr[-3000:]}")
    rss = json.loads(child.stdout.strip().splitlines()[-1])["maxrss_mb"]
    doc = json.loads((out / "manifest.json").read_text())
    account = doc["run"]
    startup = wall - account["elapsed_s"]  # interpreter, imports, config: before run() starts
    write_s, shard_bytes = pyarrow_write_seconds(out, doc["config"]["emit"]["row_group_rows"])
    return {"n": n, "wall_s": wall, "s_per_sample": wall / n, "rss_mb": rss,
            "first_result_s": startup + account["first_result_s"], "emit_s": account["emit_s"],
            "pyarrow_write_s": write_s, "shard_mb": shard_bytes / 2**20, "store_mb": folder_bytes(cache) / 2**20,
            "rows": sum(m["accepted"] for m in doc["modes"].values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ns", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--keep", type=Path, help="build under this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="irgl-scale-"))
    results = []
    try:
        print(f"recipe=all, offline world, image_size={args.image_size}, {root}")
        print(f"{'n':>7} {'s/sample':>9} {'peak RSS':>9} {'1st call':>9} {'emit s':>8} {'pyarrow s':>10} "
              f"{'emit/pa':>8} {'rows':>7} {'shards MB':>10} {'store MB':>9}")
        for n in args.ns:
            r = one(n, args.image_size, root)
            results.append(r)
            print(f"{r['n']:>7} {r['s_per_sample']:>9.4f} {r['rss_mb']:>8.0f}M {r['first_result_s']:>8.2f}s "
                  f"{r['emit_s']:>8.1f} {r['pyarrow_write_s']:>10.1f} {r['emit_s'] / r['pyarrow_write_s']:>8.2f} "
                  f"{r['rows']:>7} {r['shard_mb']:>10.0f} {r['store_mb']:>9.0f}", flush=True)
        base, last = results[0], results[-1]
        print(f"\nn={last['n']} vs n={base['n']}: peak RSS x{last['rss_mb'] / base['rss_mb']:.2f}, "
              f"seconds per sample x{last['s_per_sample'] / base['s_per_sample']:.2f}, "
              f"first backend result {max(r['first_result_s'] for r in results):.2f}s at worst")
        per = last["s_per_sample"]
        print(f"extrapolated to n=300,000 on this machine: {per * 300_000 / 3600:.1f} h wall, "
              f"emit {last['emit_s'] / last['n'] * 300_000 / 60:.0f} min, "
              f"shards {last['shard_mb'] / last['n'] * 300_000 / 1024:.0f} GB, "
              f"store {last['store_mb'] / last['n'] * 300_000 / 1024:.0f} GB, peak RSS ~{last['rss_mb']:.0f} MB")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
