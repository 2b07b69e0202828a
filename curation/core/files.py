"""Writing a file so that a reader, or a process killed mid-write, never sees half of it: the one way
every part of the project writes a file that others read (store entries, manifest, card, report pages,
trainer configs)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which is not thread-safe to do per write.
_UMASK = _umask()


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write to a temporary name in the same folder, then rename into place (atomic on POSIX).

    The file gets the permissions an ordinary write would (0666 less the umask: mkstemp's 0600 would
    hide a dataset from the people it is for). The temporary name is unique per call, so several
    processes or threads writing the same path (content-addressed files, every rank writing one
    config) are all safe: the last rename wins and each version is whole.
    """
    folder = os.path.dirname(os.fspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(os.fspath(path))}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
