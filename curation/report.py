"""`python -m curation.report data=<dataset dir> [out=<folder>]`: a static HTML report to look at."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from curation.after_run.report import USAGE, Settings, build
from curation.core.cli import command
from curation.core.config import ConfigError
from curation.writer import manifest


def run(cfg: DictConfig) -> Path:
    data = Path(cfg.data)
    if not (data / manifest.FILENAME).is_file():
        raise ConfigError(f"{data} has no {manifest.FILENAME}: give data=<a folder written by curation.run>")
    out = Path(cfg.out) if cfg.out else data / "report"
    try:
        settings = Settings.from_config(cfg)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the report folder out={out}: {exc.strerror or exc}") from None
    index = build(data, out, settings)
    print(index.resolve())
    return index


main = command("report", USAGE)(run)

if __name__ == "__main__":
    main()
