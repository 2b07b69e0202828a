"""`python -m curation.push data=<dataset dir> repo_id=<org/name> [private=true] [revision=<branch>] [tag=<tag>]`"""

from __future__ import annotations

from huggingface_hub import get_token
from huggingface_hub.errors import HfHubHTTPError
from omegaconf import DictConfig, OmegaConf

from curation.after_run.push import USAGE, PushError, Published, run as push_dataset, scrub
from curation.after_run.validate import ValidationFailed
from curation.core.cli import command
from curation.core.config import ConfigError


def run(cfg: DictConfig) -> Published | None:
    missing = [k for k in ("data", "repo_id") if OmegaConf.is_missing(cfg, k) and not (k == "repo_id" and cfg.dry_run)]
    if missing:
        raise ConfigError(f"give {' and '.join(f'{k}=...' for k in missing)}")
    return push_dataset(cfg)


def describe(exc: BaseException) -> str:
    """The error line; huggingface_hub's errors may quote a request, so the token never gets through."""
    if isinstance(exc, ValidationFailed):
        return "\n  ".join([f"refusing to push {exc}", *map(str, exc.problems)])
    detail = str(exc) if isinstance(exc, (PushError, ConfigError)) else f"{type(exc).__name__}: {exc}"
    return scrub(detail, get_token())


main = command("push", USAGE, errors=(ValidationFailed, PushError, HfHubHTTPError, OSError), describe=describe)(run)

if __name__ == "__main__":
    main()
