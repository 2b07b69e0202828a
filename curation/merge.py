"""`python -m curation.merge out=<dir>`: assemble the parts of a sharded run into one dataset."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from curation.core.cli import command
from curation.writer.merge import MergeError, merge

USAGE = """usage: python -m curation.merge out=<dir>
  joins out/parts/part-*-of-N (written by `python -m curation.run ... shard=i num_shards=N`) into one dataset in out/,
  applying the dedup rule across every part; see docs/scale_out.md."""


def run(cfg: DictConfig) -> Path:
    out = merge(Path(cfg.out))
    print(f"merged dataset written to {out.resolve()}", file=sys.stderr)
    return out


main = command("merge", USAGE, errors=(MergeError,))(run)

if __name__ == "__main__":
    main()
