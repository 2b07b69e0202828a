"""`python -m curation.merge out=<dir>`: assemble the parts of a sharded run into one dataset."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from curation.core.config import load_config
from curation.writer.merge import merge


def main(overrides: Sequence[str] | None = None) -> Path:
    cfg = load_config("merge", list(sys.argv[1:] if overrides is None else overrides))
    out = merge(Path(cfg.out))
    print(f"merged dataset written to {out.resolve()}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
