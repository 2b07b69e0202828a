"""`python -m curation.export data=<dataset dir> format=irg out=<dir>`: the official IRG SFT layout."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Sequence

from curation.core.config import load_config, wants_help
from curation.publish.export import ExportError, USAGE, export_irg


def main(overrides: Sequence[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if overrides is None else overrides)
    if wants_help(argv):
        print(USAGE)
        raise SystemExit(0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config("export", argv)
    if cfg.format != "irg":
        raise ExportError(f"format={cfg.format}: only `irg` (the official IRG SFT layout) is written")
    return export_irg(Path(cfg.data), Path(cfg.out), row_group_rows=cfg.row_group_rows,
                      rows_per_file=cfg.rows_per_file)


if __name__ == "__main__":
    main()
