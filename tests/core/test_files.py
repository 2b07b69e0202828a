"""The one atomic writer (curation/core/files.py)."""

from __future__ import annotations

import os
import stat

import pytest

from curation.core import files


def test_a_written_file_is_whole_readable_by_others_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "manifest.json"
    files.write_atomic(target, "first")
    files.write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~files._UMASK  # not mkstemp's 0600
    assert sorted(p.name for p in target.parent.iterdir()) == ["manifest.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    target = tmp_path / "card.md"
    files.write_atomic(target, "old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        files.write_atomic(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.md"]
