"""Test helpers: build small offline datasets through the real entrypoint."""

from __future__ import annotations

import hashlib
from pathlib import Path


from curation.writer import manifest
from curation.run import main

FAST = ["image_size=128", "run.progress_interval_s=60"]


def build(tmp: Path, *overrides: str, out: str = "ds", cache: str = "cache") -> Path:
    """Run the pipeline in-process; returns the dataset folder."""
    return main([*FAST, f"out={tmp / out}", f"cache={tmp / cache}", *overrides])


def shard_digests(out: Path) -> dict[str, str]:
    """sha256 of every shard file, by path relative to the dataset folder."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "data").rglob("*.parquet"))}


def backend_calls(out: Path) -> dict[str, int]:
    return manifest.read(out)["run"]["backend_calls"]
