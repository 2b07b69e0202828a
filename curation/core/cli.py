"""One way for every command (`python -m curation.run|merge|train|export|push|report`) to start and fail.

Each entrypoint is a `run(cfg)` function wrapped by `command(...)`, which gives it its `main`:

- `-h`/`--help` anywhere prints the command's usage and exits 0;
- the overrides are composed with Hydra over `recipes/<config>.yaml` (or the command's own `compose`);
- from the command line, a problem the user can fix — a bad override, a backend that cannot start, a
  dataset that fails validation, any of the command's declared `errors` — is printed as `error: <one
  sentence>` with no traceback and exits with status 2 (or the exception's own `exit_status`, e.g. 1
  for "validation found problems"); anything else is a bug and keeps its traceback;
- called from Python with an argument list (tests, notebooks), errors propagate as the exceptions they
  are, so a caller can tell them apart by type.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence, TypeVar

from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from curation.core.config import ConfigError, load_config, wants_help

T = TypeVar("T")

#: Errors every command reports as one sentence: the configuration could not be composed or is wrong.
CONFIG_ERRORS: tuple[type[BaseException], ...] = (ConfigError, HydraException, OmegaConfBaseException)


def command(config: str, usage: str, *, errors: tuple[type[BaseException], ...] = (),
            compose: Callable[[list[str]], DictConfig] | None = None,
            describe: Callable[[BaseException], str] = str) -> Callable[[Callable[[DictConfig], T]], Callable[..., T]]:
    """Turn `run(cfg) -> T` into `main(overrides=None) -> T` (see the module docstring).

    `describe` turns a user-facing error into the text after `error: ` (push uses it to scrub the token).
    """
    expected = CONFIG_ERRORS + tuple(errors)

    def wrap(run: Callable[[DictConfig], T]) -> Callable[..., T]:
        def main(overrides: Sequence[str] | None = None) -> T:
            argv = list(sys.argv[1:] if overrides is None else overrides)
            if wants_help(argv):
                print(usage)
                raise SystemExit(0)
            try:
                cfg = compose(argv) if compose is not None else load_config(config, argv)
                return run(cfg)
            except expected as exc:
                if overrides is not None:
                    raise
                text = config_sentence(exc) if isinstance(exc, OmegaConfBaseException) else describe(exc)
                print(f"error: {text}", file=sys.stderr)
                raise SystemExit(getattr(exc, "exit_status", 2)) from None

        main.__doc__ = f"{run.__doc__ or ''}\n\n{usage}"
        return main

    return wrap


def config_sentence(exc: OmegaConfBaseException) -> str:
    """OmegaConf's message without its multi-line `full_key:`/`object_type=` trailer."""
    key = getattr(exc, "full_key", None)
    if isinstance(exc, MissingMandatoryValue) and key:
        return f"{key}=... is required (it has no default): give it on the command line"
    message = getattr(exc, "msg", None) or str(exc).splitlines()[0]
    return f"{key}: {message}" if key and key not in message else message
