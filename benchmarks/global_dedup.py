"""Global dedup at IRGL-300K scale: wall seconds and peak memory of `find_duplicates`.

    python benchmarks/global_dedup.py [--n 300000] [--max-distance 4]

Rows: random 64-bit perceptual hashes with planted exact (1%), near (2%, 1-4 bits flipped)
and prompt (1%) duplicates, the rest unique; each image 512² or 1024², PNG or JPEG, of some size in
bytes; each row once without and once with a preference score (with scores, the pass first finds
the rows beaten on size, then ranks: two passes over the keys). One run per size, figures printed.
"""

from __future__ import annotations

import argparse
import random
import resource
import time

from curation.pipeline.dedup import DedupRow, find_duplicates


def rows(n: int, seed: int = 0) -> list[DedupRow]:
    rng = random.Random(seed)
    out: list[DedupRow] = []
    looks: dict[str, tuple] = {}  # the same bytes have one size
    for row in _keys(n, rng):
        pixels, lossless, nbytes = looks.setdefault(row.image_sha256, (
            rng.choice((512 * 512, 1024 * 1024)), rng.random() < 0.5, rng.randrange(50_000, 2_000_000)))
        out.append(row._replace(pixels=pixels, lossless=lossless, nbytes=nbytes, score=rng.gauss(21.0, 1.2)))
    return out


def _keys(n: int, rng: random.Random) -> list[DedupRow]:
    out: list[DedupRow] = []
    for i in range(n):
        sid = f"{rng.getrandbits(64):016x}"
        roll = rng.random()
        if out and roll < 0.01:
            o = rng.choice(out)
            out.append(DedupRow(sid, f"p{i}", o.image_sha256, o.phash))
        elif out and roll < 0.03:
            o = rng.choice(out)
            h = o.phash
            for _ in range(rng.randint(1, 4)):
                h ^= 1 << rng.randrange(64)
            out.append(DedupRow(sid, f"p{i}", f"i{i}", h))
        elif out and roll < 0.04:
            out.append(DedupRow(sid, rng.choice(out).prompt_key, f"i{i}", rng.getrandbits(64)))
        else:
            out.append(DedupRow(sid, f"p{i}", f"i{i}", rng.getrandbits(64)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[30_000, 300_000])
    parser.add_argument("--max-distance", type=int, default=4)
    args = parser.parse_args()
    for n in args.n:
        scored = rows(n)
        for label, data in (("no scores", [r._replace(score=None) for r in scored]), ("scores", scored)):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.perf_counter()
            found = find_duplicates(data, max_distance=args.max_distance)
            seconds = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            by_reason: dict[str, int] = {}
            for d in found.values():
                by_reason[d.reason] = by_reason.get(d.reason, 0) + 1
            print(f"n={n:>7}, {label:>9}: {seconds:6.2f} s ({n / seconds:,.0f} rows/s), peak RSS {peak / 1024:.0f} MB "
                  f"(+{(peak - before) / 1024:.0f} MB in find_duplicates), "
                  f"duplicates {dict(sorted(by_reason.items()))}")


if __name__ == "__main__":
    main()
