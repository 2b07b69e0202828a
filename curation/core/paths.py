"""Where the data files that ship with the package live.

`schemas/` and `recipes/` sit at the top of the repository so a reader finds them; a wheel
carries them inside the package (`curation/_schemas`, `curation/_recipes`, see pyproject.toml).
Both layouts resolve here, so the code works from a checkout, an editable install and a normal
install alike, from any working directory.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # curation/ (this file is curation/core/paths.py)


def _first_existing(*candidates: Path) -> Path:
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"none of {[str(c) for c in candidates]} exists: the installation is incomplete")


def schemas_dir() -> Path:
    return _first_existing(_PACKAGE / "_schemas", _PACKAGE.parent / "schemas")


def recipes_dir() -> Path:
    return _first_existing(_PACKAGE / "_recipes", _PACKAGE.parent / "recipes")


def templates_dir() -> Path:
    return _PACKAGE / "templates"
