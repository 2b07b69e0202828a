"""All six commands start and fail the same way (curation/core/cli.py)."""

from __future__ import annotations

import importlib
import sys

import pytest

COMMANDS = ("run", "merge", "train", "export", "push", "report")


def command_line(monkeypatch, name: str, *args: str) -> int:
    """`python -m curation.<name> ARGS` in this process: the exit status (0 when main returns)."""
    module = importlib.import_module(f"curation.{name}")
    monkeypatch.setattr(sys, "argv", [f"curation.{name}", *args])
    try:
        module.main()
    except SystemExit as exc:
        return exc.code
    return 0


@pytest.mark.parametrize("name", COMMANDS)
def test_help_prints_the_usage_and_exits_0(name, monkeypatch, capsys):
    assert command_line(monkeypatch, name, "--help") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m curation.{name}")


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unknown_knob_is_one_error_line_and_exit_2(name, monkeypatch, capsys):
    assert command_line(monkeypatch, name, "no_such_knob_anywhere=1") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_knob_anywhere" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ("merge", "export", "push", "report"))
def test_a_missing_required_knob_is_one_error_line(name, monkeypatch, capsys):
    # Every one of these needs a dataset folder (`data=` or `out=`) and none is given.
    assert command_line(monkeypatch, name) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err


def test_from_python_errors_keep_their_type(tmp_path):
    from curation.merge import main
    from curation.writer.merge import MergeError

    with pytest.raises(MergeError):
        main([f"out={tmp_path}"])
