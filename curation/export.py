"""`python -m curation.export data=<dataset dir> format=irg out=<dir>`: the official IRG SFT layout."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from curation.after_run import trainer_config
from curation.after_run.export import USAGE, ExportError, export_irg
from curation.core.cli import command
from curation.core.config import ConfigError


def run(cfg: DictConfig) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if cfg.format != "irg":
        raise ExportError(f"format={cfg.format}: only `irg` (the official IRG SFT layout) is written")
    if int(cfg.gpus) < 1 or int(cfg.workers) < 1:
        raise ConfigError(f"gpus={cfg.gpus} workers={cfg.workers}: the launch needs at least one GPU and one worker")
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the export folder out={out}: {exc.strerror or exc}") from None
    infos = export_irg(Path(cfg.data), out, row_group_rows=int(cfg.row_group_rows),
                       rows_per_file=int(cfg.rows_per_file), processes=int(cfg.processes) or None,
                       compression=str(cfg.compression))
    settings = {**OmegaConf.to_container(cfg.trainer, resolve=True), "gpus": int(cfg.gpus),
                "workers": int(cfg.workers)}
    folder = trainer_config.write(out, infos, settings)
    print(f"exported to {out.resolve()}; official trainer configs in {folder.resolve()}", file=sys.stderr)
    return out


main = command("export", USAGE, errors=(ExportError,))(run)

if __name__ == "__main__":
    main()
