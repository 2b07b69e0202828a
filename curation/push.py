"""`python -m curation.push data=<dataset dir> repo_id=<org/name> [private=true] [revision=<branch>] [tag=<tag>]`"""

from __future__ import annotations

import sys
from typing import Sequence

from huggingface_hub import get_token
from huggingface_hub.errors import HfHubHTTPError
from omegaconf import OmegaConf

from curation.core.config import load_config, wants_help
from curation.after_run.push import USAGE, PushError, run, scrub
from curation.after_run.validate import ValidationFailed


def main(overrides: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if overrides is None else overrides)
    if wants_help(argv):
        print(USAGE)
        return 0
    cfg = load_config("push", argv)
    missing = [k for k in ("data", "repo_id") if OmegaConf.is_missing(cfg, k) and not (k == "repo_id" and cfg.dry_run)]
    if missing:
        print(f"error: give {' and '.join(f'{k}=...' for k in missing)}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        run(cfg)
    except ValidationFailed as exc:
        print(f"refusing to push {exc.data}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except (PushError, HfHubHTTPError, OSError) as exc:
        # huggingface_hub's errors may quote a request; never let the token through.
        detail = str(exc) if isinstance(exc, PushError) else f"{type(exc).__name__}: {exc}"
        print(f"error: {scrub(detail, get_token())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
