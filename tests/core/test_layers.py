"""The folders of `curation/` import one way: each only from the folders below it.

core ← world, trainer ← backends ← pipeline ← writer ← after_run, monitor ← the entrypoints (curation/*.py).
A newcomer reads the data flow off the folder names; an import against the flow (a writer module
reaching into an entrypoint, a backend into the pipeline) is a cycle waiting to happen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import curation

ROOT = Path(curation.__file__).parent

# What each folder may import besides itself. The package root (`curation.__version__`) is open to all.
ALLOWED = {
    "core": set(),
    "world": {"core"},
    "trainer": {"core"},
    "backends": {"core", "world"},
    "pipeline": {"core", "world", "backends"},
    "writer": {"core", "world", "backends", "pipeline"},
    # The live page and /metrics: read the progress, the walker and the store, show the writer's GPU-hours.
    "monitor": {"core", "world", "backends", "pipeline", "writer"},
    "after_run": {"core", "writer"},
    "<entrypoints>": {"core", "world", "backends", "pipeline", "writer", "after_run", "trainer", "monitor"},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else "<entrypoints>"


def _imported_layers(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "curation" else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "curation" or len(parts) < 2 or parts[1] == "__version__":
                continue
            target = parts[1] if (ROOT / parts[1]).is_dir() else "<entrypoints>"
            found.add((target, node.lineno))
    return found


def test_every_folder_imports_only_from_the_layers_below_it():
    assert set(ALLOWED) - {"<entrypoints>"} <= {p.name for p in ROOT.iterdir() if p.is_dir()}
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        layer = _layer(path)
        assert layer in ALLOWED, f"{path}: folder {layer!r} has no place in the layers; add it to ALLOWED"
        for target, line in _imported_layers(path):
            if target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line} ({layer}) imports {target}")
            elif target == layer == "<entrypoints>":
                wrong.append(f"{path.relative_to(ROOT.parent)}:{line}: an entrypoint imports another entrypoint")
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_the_layer_check_sees_a_wrong_import(tmp_path):
    # The check itself can fail: a writer module that imports an entrypoint is caught.
    bad = tmp_path / "card.py"
    bad.write_text((ROOT / "writer" / "card.py").read_text() + "\nfrom curation.run import main\n")
    targets = {target for target, _ in _imported_layers(bad)}
    assert "<entrypoints>" in targets and "<entrypoints>" not in ALLOWED["writer"]
