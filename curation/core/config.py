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
# A URL inside any string value (fsspec chains `zip://a.png::https://…` are split on `::` first).
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
# A query (or fragment) parameter whose value is a credential: `?token=`, `api_key=`, `sig=` (Azure
# SAS), `X-Amz-Signature=`, `X-Amz-Credential=`, `X-Amz-Security-Token=`, `access_token=` …
SECRET_PARAM = re.compile(r"(?:^|[_.-])(api_?key|apikey|key|token|sig|signature|secret|password|passwd|pwd|"
                          r"auth|authorization|credential|session_?token)$", re.IGNORECASE)
QUERY_PARAM = re.compile(r"([?&;#])([^=&;#]+)=([^&;#]*)")


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


def redact_text(text: str) -> str:
    """`text` with the credentials inside its URLs replaced: userinfo (`https://user:pass@host`) and
    secret-looking query or fragment parameters (`?token=…`, `&sig=…`). Everything else is kept as is."""
    return URL.sub(lambda m: "::".join(_redact_url(part) for part in m.group(0).split("::")), text)


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:  # the user name may itself be the token (https://<token>@github.com): all of it goes
        authority = REDACTED + authority[authority.rindex("@"):]
    start = min((i for i in (tail.find("?"), tail.find("#")) if i >= 0), default=len(tail))
    params = QUERY_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}={REDACTED}"
                             if m.group(3) and SECRET_PARAM.search(m.group(2)) else m.group(0), tail[start:])
    return f"{scheme}://{authority}{tail[:start]}{params}"


def redact(value: Any) -> Any:
    """A plain copy of a config with every secret-looking value replaced.

    Values under secret-looking keys go whole; in every other string, credentials inside URLs go
    (`redact_text`). Keys that *name* where a secret lives (`api_key_env: OPENAI_API_KEY`) are
    kept: the name of an environment variable is not a secret, and a reader needs it to
    reproduce the run.
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
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
