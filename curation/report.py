"""`python -m curation.report data=<dataset dir> [out=<folder>]`: a static HTML report to look at."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from curation.core.config import load_config, wants_help
from curation.writer import manifest
from curation.after_run.report import USAGE, Settings, build


def main(overrides: Sequence[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if overrides is None else overrides)
    if wants_help(argv):
        print(USAGE)
        raise SystemExit(0)
    cfg = load_config("report", argv)
    data = Path(cfg.data)
    if not (data / manifest.FILENAME).is_file():
        fail(f"{data} has no {manifest.FILENAME}: give data=<a folder written by curation.run>")
    out = Path(cfg.out) if cfg.out else data / "report"
    try:
        settings = Settings.from_config(cfg)
    except ValueError as exc:
        fail(str(exc))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create the report folder out={out}: {exc.strerror or exc}")
    index = build(data, out, settings)
    print(index.resolve())
    return index


def fail(sentence: str) -> None:
    print(f"error: {sentence}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
