"""The official IRG trainer's dataset entries and stage configs for an export (IRGL.md, "How the
official trainer loads it"; read from `SFT/data/` of Osilly/Interleaving-Reasoning-Generation).

- `dataset_info.json`: `{mode_key: {<dataset name>: {"data_dir", "parquet_info_path"}}}`, the shape
  of `DATASET_INFO` in `data/dataset_info.py`; merge it there (docs/training.md shows how).
- `stage1.yaml` / `stage2.yaml`: one group per mode with `dataset_names`, `image_transform_args`,
  `vit_image_transform_args`, `is_mandatory`, `num_used_data` and `weight`, as in
  `data/configs/train_toy_dataset_stage{1,2}.yaml`.

`num_used_data` is a number of file *paths*: the reader repeats the folder's files to that length,
splits their row groups evenly over GPUs and then over each GPU's data-loader workers (both
splits round down), and a worker left with no row group loops forever. So each mode gets
`files × repeats` with the fewest whole repeats of every file that make
`repeats × row groups ≥ gpus × workers`: no worker is empty, and every file is used equally often
whatever order the reader lists them in.
"""

from __future__ import annotations

import json
from math import ceil
from pathlib import Path

import yaml

FOLDER = "trainer"


def num_used_data(info: dict[str, dict], gpus: int, workers: int) -> int:
    """Paths to use from a mode folder whose parquet info is `info` (abs path -> num_row_groups …)."""
    files = len(info)
    row_groups = sum(entry["num_row_groups"] for entry in info.values())
    if not files or not row_groups:
        raise ValueError("a mode folder with no row groups cannot feed the trainer")
    return files * max(1, ceil(gpus * workers / row_groups))


def dataset_info(out: Path, modes: list[str], name: str) -> dict[str, dict]:
    out = Path(out).resolve()
    return {mode: {name: {"data_dir": str(out / mode),
                          "parquet_info_path": str(out / "parquet_info" / f"{mode}.json")}} for mode in modes}


def stage_config(infos: dict[str, dict], stage: dict, settings: dict) -> dict:
    """The stage YAML's groups: the stage's modes that the export holds, in the stage's order."""
    groups = {}
    for mode, weight in stage["weights"].items():
        if mode not in infos:
            continue
        groups[mode] = {
            "dataset_names": [settings["dataset_name"]],
            "image_transform_args": dict(settings["image_transform_args"]),
            "vit_image_transform_args": dict(settings["vit_image_transform_args"]),
            "is_mandatory": mode in stage["mandatory"],
            "num_used_data": [num_used_data(infos[mode], settings["gpus"], settings["workers"])],
            "weight": float(weight),
        }
    return groups


def write(out: Path, infos: dict[str, dict], settings: dict) -> Path:
    """Write `<out>/trainer/`; `settings` is the export's `trainer` config plus `gpus` and `workers`."""
    folder = Path(out) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    modes = [m for m in infos if infos[m]]
    entries = dataset_info(out, modes, settings["dataset_name"])
    (folder / "dataset_info.json").write_text(json.dumps(entries, indent=2) + "\n")
    header = (f"# Written by curation.export for {settings['gpus']} GPUs x {settings['workers']} data-loader "
              "workers (--num_workers):\n# num_used_data x row groups >= GPUs x workers, so no worker is empty. "
              "Re-export with gpus= workers= for another launch.\n")
    for stage in ("stage1", "stage2"):
        groups = stage_config({m: infos[m] for m in modes}, settings[stage], settings)
        (folder / f"{stage}.yaml").write_text(header + yaml.safe_dump(groups, sort_keys=False))
    return folder
