"""A normal (non-editable) install works from any directory: schemas and recipes ship in the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets

REPO = Path(__file__).resolve().parents[2]


def test_wheel_install_runs_from_another_directory(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(REPO)], check=True)
    (wheel,) = wheels.glob("irgl_curation-*.whl")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import curation, curation.core.paths as p; "
                            "print(curation.__file__); print(p.schemas_dir()); print(p.recipes_dir())"],
                           cwd=workdir, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(path.startswith(str(target)) for path in where), where
    subprocess.run([sys.executable, "-m", "curation.run", "recipe=initial_thinking", "n=3", "image_size=64",
                    "out=ds", "cache=cache"], cwd=workdir, env=env, check=True, capture_output=True)
    ds = datasets.load_dataset(str(workdir / "ds"), "initial_thinking_generation_learning", split="train")
    assert len(ds) == 3
