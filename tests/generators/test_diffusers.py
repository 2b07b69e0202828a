"""`generator=diffusers` on a tiny random Stable Diffusion pipeline built here from configs (no hub)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from tokenizers import pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from curation.backends.base import BackendUnavailable, GeneratedImage, GenerateRequest
from curation.backends.generators.diffusers_pipeline import DiffusersGenerator
from curation.run import main


def tiny_pipeline(folder: Path) -> Path:
    """A Stable Diffusion pipeline a few hundred kB in size, random weights, saved with save_pretrained."""
    torch.manual_seed(0)
    # A byte-level vocabulary with no merges: every prompt tokenises, one token per byte.
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
            vocab[char + suffix] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=32)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=32, sample_size=32)
    scheduler = DDIMScheduler(clip_sample=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> Path:
    return tiny_pipeline(tmp_path_factory.mktemp("diffusers") / "tiny-sd")


def generator(pipeline_dir, **kw) -> DiffusersGenerator:
    return DiffusersGenerator(model_dir=str(pipeline_dir), width=64, height=64, num_inference_steps=2,
                              device="cpu", **kw)


def test_generates_seeded_images_of_the_asked_size(pipeline_dir):
    gen = generator(pipeline_dir, guidance_scale=3.0)
    gen.check()

    def draw(seed):
        result = asyncio.run(gen.generate(GenerateRequest(prompt="a red ball", seed=seed, width=64, height=64)))
        assert isinstance(result, GeneratedImage)
        assert result.lineage["seed"] == seed
        return np.asarray(result.image)

    first, again, other = draw(7), draw(7), draw(8)
    assert first.shape == (64, 64, 3)
    assert np.array_equal(first, again)  # the seed alone decides the image
    assert not np.array_equal(first, other)


def test_identity_names_the_pipeline_and_its_settings(pipeline_dir, tmp_path):
    gen = generator(pipeline_dir, guidance_scale=3.0)
    ident = gen.identity()
    assert ident["id"] == "tiny-sd"
    assert ident["settings"]["guidance_scale"] == 3.0 and ident["settings"]["num_inference_steps"] == 2
    copy = shutil.copytree(pipeline_dir, tmp_path / "tiny-sd")
    config = json.loads((copy / "scheduler" / "scheduler_config.json").read_text())
    (copy / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, "beta_end": 0.02}))
    assert generator(copy).identity()["revision"] != ident["revision"]  # another scheduler, another key


def test_start_up_errors(pipeline_dir, tmp_path):
    (tmp_path / "weightless").mkdir()
    shutil.copy(pipeline_dir / "model_index.json", tmp_path / "weightless" / "model_index.json")
    broken = [
        generator(tmp_path / "nothing-here"),
        generator(tmp_path / "weightless"),  # configs without the component folders
        generator(pipeline_dir, call_kwargs={"not_an_argument": 1}),
        DiffusersGenerator(model_dir=str(pipeline_dir), width=60, height=64, device="cpu"),
        DiffusersGenerator(model_dir=str(pipeline_dir), dtype="float8"),
    ]
    for gen in broken:
        with pytest.raises(BackendUnavailable) as err:
            gen.check()
        assert "\n" not in str(err.value)
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable):
            DiffusersGenerator(model_dir=str(pipeline_dir), width=64, height=64, device="cuda").check()


def test_reference_diffusers_from_the_command_line(pipeline_dir, tmp_path):
    """A prompts-only source whose high-quality images come from `reference=diffusers`."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a red ball, in a grey studio\na photo of two blue cubes, on beige paper\n")
    out = main(["recipe=initial_thinking", "n=2", f"source.prompts_file={prompts}", "reference=diffusers",
                f"reference.model_dir={pipeline_dir}", "reference.width=64", "reference.height=64",
                "reference.num_inference_steps=2", "reference.device=cpu",
                f"out={tmp_path / 'ds'}", f"cache={tmp_path / 'cache'}", "run.progress_interval_s=600"])
    shards = sorted((out / "data" / "initial_thinking_generation_learning").glob("*.parquet"))
    lineages = [json.loads(v) for p in shards for v in pq.read_table(p, columns=["lineage"])["lineage"].to_pylist()]
    assert len(lineages) == 2
    for lineage in lineages:
        ref = lineage["stages"]["reference_image"]
        assert ref["backend"]["id"] == "tiny-sd" and ref["seed"] is not None
