"""How many CPUs this process may use: what worker pools are sized by."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (a Slurm or container limit shows there, not
    in `os.cpu_count()`), where the platform has one."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
