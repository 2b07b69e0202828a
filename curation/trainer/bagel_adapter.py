"""IRGL rows as the samples BAGEL's packed dataset consumes, and a launcher for BAGEL's trainer.

BAGEL (github.com/ByteDance-Seed/Bagel, and the IRG fork's `SFT/`) is not vendored. Its
`data/dataset_base.py:PackedDataset` pulls samples from the datasets of `DATASET_REGISTRY`
and packs them; a sample is a dict with

- `sequence_plan`: one entry per item, `{"type": "text" | "vae_image" | "vit_image",
  "enable_cfg": 0|1, "loss": 0|1, "special_token_loss": 0, "special_token_label": None}`;
- `text_ids_list`: the token ids of each text item, in order;
- `image_tensor_list`: one [3, H, W] tensor per image item, in order (from the group's
  `transform` for VAE copies and `vit_transform` for ViT copies);
- `num_tokens`: text ids plus image grid cells — without the two frame tokens per item, which
  the packer adds itself (`num_tokens + 2 * len(sequence_plan)`);
- `data_indexes`: `{"data_indexes": <resume state>, "worker_id": int, "dataset_name": str}`; the
  trainer saves the last one per worker and hands them back as `data_status` on resume.

Difference from the IRG fork's own parquet reader: loss-bearing text gets `enable_cfg: 0`, so it
is never dropped even if text dropout is not 0 (IRGL.md: reasoning text that carries loss must
not be dropped; the official runs reach the same by setting text dropout to 0).

Registering by hand (what `launch` does for you), in the BAGEL checkout:

    # data/dataset_info.py
    from curation.trainer.bagel_adapter import IrglBagelDataset
    for mode in ("initial_full_learning", "improving_full_learning", ...):
        DATASET_REGISTRY[mode] = IrglBagelDataset
        DATASET_INFO[mode] = {"irgl": {"data_dir": "/path/to/dataset"}}   # or a Hub dataset id

and in the dataset YAML one group per mode key with `dataset_names: [irgl]`, its
`image_transform_args` / `vit_image_transform_args`, `weight` and `is_mandatory`
(`dataset_config` below writes it).
"""

from __future__ import annotations

import importlib
import runpy
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml
from omegaconf import DictConfig
from torch.utils.data import IterableDataset, get_worker_info

from curation.core.files import write_atomic
from curation.core import schema
from curation.trainer.dataset import MixedStream, index_modes, mode_weights
from curation.trainer.plan import ImageGrid, Planner, RowPlan

DATASET_NAME = "irgl"  # the name under each mode group in BAGEL's DATASET_INFO
KINDS = {"text": "text", "vae": "vae_image", "vit": "vit_image"}


class BagelNotFound(FileNotFoundError):
    pass


def bagel_sample(plan: RowPlan) -> dict[str, Any]:
    sample: dict[str, Any] = {"sequence_plan": [], "text_ids_list": [], "image_tensor_list": [], "num_tokens": 0}
    for item in plan.items:
        sample["sequence_plan"].append({"type": KINDS[item.kind], "enable_cfg": int(item.droppable),
                                        "loss": int(item.loss), "special_token_loss": 0, "special_token_label": None})
        if item.kind == "text":
            sample["text_ids_list"].append(list(item.ids))
        else:
            sample["image_tensor_list"].append(item.pixels.clone())  # the clean copy must not alias the target
        sample["num_tokens"] += item.content_tokens
    return sample


def grid_of(transform: Any) -> ImageGrid:
    """The resize bounds of a BAGEL `ImageTransform` (its `resize_transform` and `stride`)."""
    resize = transform.resize_transform
    return ImageGrid(min_side=resize.min_size, max_side=resize.max_size, stride=transform.stride)


class IrglBagelDataset(IterableDataset):
    """One mode of an IRGL dataset as a BAGEL dataset group (constructed by BAGEL's PackedDataset).

    Rows are split across ranks and data-loader workers and resumed exactly as in curation.train
    (`curation.trainer.dataset.MixedStream`, one mode at weight 1)."""

    def __init__(self, dataset_name: str, tokenizer: Any, transform: Any, data_dir_list: list[str],
                 vit_transform: Any = None, local_rank: int = 0, world_size: int = 1, num_workers: int = 8,
                 data_status: Mapping[int, dict] | None = None):
        super().__init__()
        if dataset_name not in schema.MODE_KEYS:
            raise ValueError(f"dataset group {dataset_name!r} is not an IRGL mode key")
        if len(data_dir_list) != 1:
            raise ValueError(f"{dataset_name}: one IRGL dataset per mode group, got {data_dir_list}")
        needs_vit = any(seg.vit for seg in schema.load(dataset_name).sequence)
        if needs_vit and vit_transform is None:
            raise ValueError(f"{dataset_name} has ViT copies: give the group vit_image_transform_args")
        vit = vit_transform or transform  # unused when the mode has no ViT copy
        self.mode = dataset_name
        self.data = data_dir_list[0]
        self.planner = Planner(tokenizer, grid_of(transform), grid_of(vit), transforms={"vae": transform, "vit": vit})
        self.local_rank = local_rank
        self.world_size = world_size
        self.data_status = dict(data_status or {})
        self.seed = 0

    def set_epoch(self, seed: int = 0) -> None:
        self.seed = seed

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        weights = {self.mode: 1.0}
        rows = MixedStream(index_modes(self.data, weights), weights, seed=self.seed,
                           stream=self.local_rank * workers + worker, num_streams=self.world_size * workers,
                           state=self.data_status.get(worker))
        mode = schema.load(self.mode)
        for drawn in rows:
            sample = bagel_sample(self.planner.plan(mode, drawn.row))
            sample["data_indexes"] = {"data_indexes": drawn.state, "worker_id": worker, "dataset_name": self.mode}
            yield sample


def register(dataset_info: Any, data: str, modes: Mapping[str, float]) -> None:
    """Put the IRGL groups into a BAGEL checkout's `data.dataset_info` module."""
    for mode in modes:
        dataset_info.DATASET_REGISTRY[mode] = IrglBagelDataset
        dataset_info.DATASET_INFO[mode] = {DATASET_NAME: {"data_dir": data}}


def dataset_config(weights: Mapping[str, float], model: DictConfig) -> dict[str, dict]:
    """BAGEL's dataset YAML: one group per mode key."""
    return {mode: {"dataset_names": [DATASET_NAME],
                   "image_transform_args": {"image_stride": model.vae.stride, "max_image_size": model.vae.max_side,
                                            "min_image_size": model.vae.min_side},
                   "vit_image_transform_args": {"image_stride": model.vit.stride, "max_image_size": model.vit.max_side,
                                                "min_image_size": model.vit.min_side},
                   "is_mandatory": mode in model.mandatory_modes,
                   "weight": weight}
            for mode, weight in weights.items()}


def trainer_flags(cfg: DictConfig, config_file: Path, out: Path) -> list[str]:
    m = cfg.train_model
    steps = cfg.steps if cfg.steps is not None else cfg.stages[str(cfg.stage)].steps
    flags = {"dataset_config_file": config_file, "results_dir": out, "checkpoint_dir": out / "checkpoints",
             "model_path": m.model_path, "resume_from": cfg.init_from or m.model_path, "total_steps": steps,
             "global_seed": cfg.seed, "data_seed": cfg.seed, **m.args}
    argv: list[str] = []
    for key, value in flags.items():
        if value is True:
            argv.append(f"--{key}")
        elif value is not False:
            argv += [f"--{key}", str(value)]
    return argv


def launch(cfg: DictConfig, out: Path) -> Path:
    """Run the BAGEL checkout's trainer in this process, on this dataset (one process per GPU: torchrun)."""
    root = Path(cfg.train_model.bagel_root).resolve()
    script = root / "train" / "pretrain_unified_navit.py"
    if not script.is_file() or not (root / "data" / "dataset_info.py").is_file():
        raise BagelNotFound(f"train_model.bagel_root={root} is not a BAGEL checkout "
                            "(train/pretrain_unified_navit.py and data/dataset_info.py)")
    weights = mode_weights(cfg.stages, cfg.stage, cfg.modes)
    data = Path(cfg.data)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "bagel_dataset.yaml"
    # Every rank writes the same file: each write is whole, so no rank reads a torn one.
    write_atomic(config_file, yaml.safe_dump(dataset_config(weights, cfg.train_model), sort_keys=False))
    sys.path.insert(0, str(root))
    register(importlib.import_module("data.dataset_info"), str(data.resolve()) if data.is_dir() else cfg.data, weights)
    sys.argv = [str(script), *trainer_flags(cfg, config_file, out)]
    runpy.run_path(str(script), run_name="__main__")
    return out
