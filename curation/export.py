"""`python -m curation.export data=<dataset dir> format=irg out=<dir>`: the official IRG SFT layout."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf

from curation.core.config import load_config, wants_help
from curation.after_run import trainer_config
from curation.after_run.export import USAGE, ExportError, export_irg


def main(overrides: Sequence[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if overrides is None else overrides)
    if wants_help(argv):
        print(USAGE)
        raise SystemExit(0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config("export", argv)
    if cfg.format != "irg":
        raise ExportError(f"format={cfg.format}: only `irg` (the official IRG SFT layout) is written")
    if int(cfg.gpus) < 1 or int(cfg.workers) < 1:
        fail(f"gpus={cfg.gpus} workers={cfg.workers}: the launch needs at least one GPU and one worker")
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create the export folder out={out}: {exc.strerror or exc}")
    infos = export_irg(Path(cfg.data), out, row_group_rows=int(cfg.row_group_rows),
                       rows_per_file=int(cfg.rows_per_file), processes=int(cfg.processes) or None,
                       compression=str(cfg.compression))
    settings = {**OmegaConf.to_container(cfg.trainer, resolve=True), "gpus": int(cfg.gpus),
                "workers": int(cfg.workers)}
    folder = trainer_config.write(out, infos, settings)
    print(f"exported to {out.resolve()}; official trainer configs in {folder.resolve()}", file=sys.stderr)
    return out


def fail(sentence: str) -> None:
    print(f"error: {sentence}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
