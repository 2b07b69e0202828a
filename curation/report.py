"""`python -m curation.report data=<dataset dir> [out=<folder>]`: a static HTML report to look at."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from curation.core.config import load_config, wants_help
from curation.publish import manifest
from curation.publish.report import Settings, USAGE, build


def main(overrides: Sequence[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if overrides is None else overrides)
    if wants_help(argv):
        print(USAGE)
        raise SystemExit(0)
    cfg = load_config("report", argv)
    data = Path(cfg.data)
    if not (data / manifest.FILENAME).is_file():
        print(f"error: {data} has no {manifest.FILENAME}: give data=<a folder written by curation.run>",
              file=sys.stderr)
        raise SystemExit(2)
    out = Path(cfg.out) if cfg.out else data / "report"
    index = build(data, out, Settings.from_config(cfg))
    print(index.resolve())
    return index


if __name__ == "__main__":
    main()
