"""model=bagel: the per-row dicts BAGEL's packed dataset consumes, and the hand-over to its trainer.

BAGEL is not vendored. `fake_bagel` writes a stand-in checkout holding only what the adapter
touches, as read in BAGEL's `data/` and `train/` code: the `DATASET_REGISTRY` / `DATASET_INFO`
dicts, the dataset YAML (groups with `dataset_names`, transform args, `weight`, `is_mandatory`),
the keyword arguments PackedDataset.build_datasets constructs a group's dataset with, and
`set_epoch` before iterating.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pyarrow.parquet as pq
import pytest
import torch

from curation.core import schema
from curation.train import main
from curation.trainer.bagel_adapter import IrglBagelDataset, bagel_sample
from curation.trainer.plan import ImageGrid, Planner
from curation.trainer.tokenizer import ByteTokenizer


class Transform:
    """BAGEL's ImageTransform as the adapter sees it: `stride`, `resize_transform` bounds, a call."""

    def __init__(self, max_image_size, min_image_size, image_stride):
        self.stride = image_stride
        self.resize_transform = type("Resize", (), {"max_size": max_image_size, "min_size": min_image_size})()
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        w, h = ImageGrid(self.resize_transform.min_size, self.resize_transform.max_size, self.stride).size(*image.size)
        return torch.zeros(3, h, w)


def test_sample_of_an_improving_full_row(handmade_dataset):
    row = pq.read_table(handmade_dataset / "data" / "improving_full_learning").slice(0, 1).to_pylist()[0]
    plan = Planner(ByteTokenizer(), ImageGrid(32, 64, 16), ImageGrid(28, 56, 14)).plan(
        schema.load("improving_full_learning"), row)
    sample = bagel_sample(plan)

    assert [(p["type"], p["loss"], p["enable_cfg"]) for p in sample["sequence_plan"]] == [
        ("text", 0, 1), ("text", 0, 1), ("vae_image", 0, 1), ("vit_image", 0, 1), ("text", 1, 0), ("vae_image", 1, 0)]
    assert all(p["special_token_loss"] == 0 and p["special_token_label"] is None for p in sample["sequence_plan"])
    assert sample["text_ids_list"] == [list(row[c].encode()) for c in ("prompt", "initial_thinking",
                                                                        "improving_thinking")]
    assert [tuple(t.shape) for t in sample["image_tensor_list"]] == [(3, 48, 64), (3, 42, 56), (3, 48, 64)]
    # BAGEL's packer adds the two frame tokens per item itself.
    assert sample["num_tokens"] + 2 * len(sample["sequence_plan"]) == plan.num_tokens


def test_dataset_group_splits_ranks_and_resumes(handmade_dataset):
    def group(rank, data_status=None):
        ds = IrglBagelDataset("initial_thinking_understanding_learning", ByteTokenizer(), Transform(64, 32, 16),
                              [str(handmade_dataset)], vit_transform=Transform(56, 28, 14), local_rank=rank,
                              world_size=2, num_workers=1, data_status=data_status)
        ds.set_epoch(3)
        return iter(ds)

    def identity(sample):
        return json.dumps(sample["text_ids_list"])

    # 8 rows, 2 ranks: each rank's first epoch is 4 rows, and the two halves do not meet.
    halves = [[s for s, _ in zip(group(rank), range(4))] for rank in (0, 1)]
    assert not {identity(s) for s in halves[0]} & {identity(s) for s in halves[1]}
    assert all(s["data_indexes"]["dataset_name"] == "initial_thinking_understanding_learning" for s in halves[1])
    resumed = group(1, {0: halves[1][1]["data_indexes"]["data_indexes"]})
    assert [identity(next(resumed)) for _ in range(2)] == [identity(s) for s in halves[1][2:4]]


@pytest.fixture
def fake_bagel(tmp_path):
    root = tmp_path / "Bagel"
    (root / "data").mkdir(parents=True)
    (root / "train").mkdir()
    (root / "data" / "__init__.py").write_text("")
    (root / "data" / "dataset_info.py").write_text("DATASET_REGISTRY = {}\nDATASET_INFO = {}\n")
    (root / "data" / "transforms.py").write_text(f"from {__name__} import Transform as ImageTransform\n")
    (root / "train" / "pretrain_unified_navit.py").write_text(textwrap.dedent("""
        import json, sys, yaml
        from pathlib import Path
        from data.dataset_info import DATASET_INFO, DATASET_REGISTRY
        from data.transforms import ImageTransform
        from curation.trainer.tokenizer import ByteTokenizer  # stands in for BAGEL's Qwen2 tokenizer

        argv = sys.argv[1:]
        flag = lambda name: argv[argv.index("--" + name) + 1]
        summary = {"argv": argv, "groups": {}}
        for name, args in yaml.safe_load(open(flag("dataset_config_file"))).items():
            weight, mandatory = args.pop("weight"), args.pop("is_mandatory")
            transform = ImageTransform(**args.pop("image_transform_args"))
            vit_transform = ImageTransform(**args.pop("vit_image_transform_args"))
            dirs = [DATASET_INFO[name][item]["data_dir"] for item in args.pop("dataset_names")]
            dataset = DATASET_REGISTRY[name](dataset_name=name, tokenizer=ByteTokenizer(), local_rank=0,
                                             world_size=1, num_workers=1, data_status=None, transform=transform,
                                             vit_transform=vit_transform, data_dir_list=dirs, **args)
            dataset.set_epoch(42)
            sample = next(iter(dataset))
            summary["groups"][name] = {"weight": weight, "is_mandatory": mandatory,
                                       "types": [p["type"] for p in sample["sequence_plan"]],
                                       "images": len(sample["image_tensor_list"]), "vae_calls": transform.calls}
        Path(flag("results_dir"), "summary.json").write_text(json.dumps(summary))
        """))
    yield root
    for name in ("data", "data.dataset_info", "data.transforms"):  # the checkout's modules, imported by the run
        sys.modules.pop(name, None)


def test_model_bagel_runs_the_checkout_trainer_on_the_shards(fake_bagel, handmade_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    out = main([f"data={handmade_dataset}", "model=bagel", "stage=2", f"train_model.bagel_root={fake_bagel}",
                f"train_model.model_path={tmp_path}/BAGEL-7B-MoT", f"out={tmp_path}/run"])

    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"] == {
        "initial_full_learning": {"weight": 1.0, "is_mandatory": True, "types": ["text", "text", "vae_image"],
                                  "images": 1, "vae_calls": 1},
        "improving_full_learning": {"weight": 1.0, "is_mandatory": True,
                                    "types": ["text", "text", "vae_image", "vit_image", "text", "vae_image"],
                                    "images": 3, "vae_calls": 2}}
    argv = summary["argv"]
    pairs = dict(zip(argv, argv[1:]))
    assert pairs["--lr"] == "2e-05" and pairs["--ema"] == "0.995" and pairs["--timestep_shift"] == "4.0"
    assert pairs["--total_steps"] == "30000" and pairs["--max_num_tokens_per_sample"] == "32768"
    assert pairs["--text_cond_dropout_prob"] == "0" and pairs["--model_path"] == f"{tmp_path}/BAGEL-7B-MoT"
    assert "--auto_resume" in argv and "--finetune_from_hf" in argv
