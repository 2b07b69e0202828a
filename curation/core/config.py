"""Command-line configuration for every entrypoint: Hydra's compose API over `recipes/`.

We use `compose` rather than `@hydra.main` on purpose: it parses the same override grammar
(`recipe=all n=500 teacher=vllm_server teacher.base_url=...`), but does not change the working
directory or write `.hydra/` folders into the user's tree, and it finds the config tree the
same way from a checkout and from an installed wheel.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from curation.core.paths import recipes_dir

# A key *is* a secret when its last word names one: `api_key`, `hf_token`, `Authorization` — but
# not `max_tokens` or `api_key_env` (the name of the variable that holds the key).
SECRET_KEY = re.compile(r"(?:^|[_-])(api_?key|token|secret|password|authorization|auth)$", re.IGNORECASE)
REDACTED = "***redacted***"


class ConfigError(ValueError):
    """A configuration value that cannot work; the message says which knob and why."""


def load_config(config_name: str, overrides: Sequence[str] | None = None) -> DictConfig:
    """Compose `recipes/<config_name>.yaml` with command-line style overrides."""
    overrides = list(sys.argv[1:] if overrides is None else overrides)
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(recipes_dir()), version_base=None, job_name=config_name):
        cfg = compose(config_name=config_name, overrides=overrides)
    return cfg


def wants_help(argv: Sequence[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)


def redact(value: Any) -> Any:
    """A plain copy of a config with every secret-looking value replaced.

    Keys that *name* where a secret lives (`api_key_env: OPENAI_API_KEY`) are kept: the name of
    an environment variable is not a secret, and a reader needs it to reproduce the run.
    """
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if SECRET_KEY.search(str(key)) and item not in (None, ""):
                out[key] = REDACTED
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
