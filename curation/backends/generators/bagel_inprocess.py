"""`generator=bagel`: BAGEL-7B-MoT in this process, through its repository's `InterleaveInferencer`.

The user provides both halves, we ship neither:
- `repo_dir`: a checkout of https://github.com/ByteDance-Seed/Bagel (its `inferencer.py`,
  `modeling/`, `data/` are imported from there, at start-up, never at import time);
- `model_dir`: the BAGEL-7B-MoT weights (`llm_config.json`, `vit_config.json`, `ae.safetensors`,
  `ema.safetensors`, tokenizer files), e.g. `huggingface-cli download ByteDance-Seed/BAGEL-7B-MoT`.

It needs a CUDA GPU (the inferencer runs under CUDA autocast and decodes on `cuda`) with flash-attn,
and about 32 GB of GPU memory in bfloat16. `check()` tests these in that order and names the first
that is missing in one sentence; only then are the weights loaded. Without a GPU, use
`generator=bagel_omni` against a vLLM-Omni server.

Think mode (`think: true`) makes BAGEL write its own plan before drawing; the plan comes back in
`GeneratedImage.thinking` (the stage stores it as `base_thinking`).

Which environment: the project's own pinned one (transformers 5.x, torch 2.14). BAGEL's checkout
was written against transformers 4.49 (its requirements.txt also pins torch 2.5.1 and pyarrow 11,
below this project's floors; installing it would downgrade the project, and transformers 4.49
ignores the `dtype=` the project's other models are loaded with). Two names its code imports are
gone from transformers 5: the "default" entry of `ROPE_INIT_FUNCTIONS` (its Qwen2RotaryEmbedding
looks it up) and the module `transformers.modeling_attn_mask_utils` (imported by its SigLIP file).
`bagel_compat()` provides both, only where missing, before the checkout is imported: the original
RoPE inverse frequencies (equal to transformers 5's own Qwen2 default RoPE, tested) and
`_prepare_4d_attention_mask`. The checkout also needs `opencv-python` and `flash-attn` on top of
the project's `[models]` extra (docs/sources_and_generators.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.util
import os
import random
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping

from curation.backends.base import BackendFailed, BackendUnavailable, GeneratedImage, GenerateRequest, ImageGenerator
from curation.backends.generators.bagel_guidance import BagelGuidance
from curation.backends.generators.diffusers_pipeline import config_digest, first_line
from curation.core.records import Reject

def _default_rope_parameters(config=None, device=None, seq_len=None, **rope_kwargs):
    """transformers 4.x's `_compute_default_rope_parameters`: the original RoPE, no scaling.

    Same signature and result: `(inv_freq, attention_factor)`, from either the config (its
    `rope_theta`, `head_dim` or hidden size / heads, `partial_rotary_factor`) or the legacy
    `base`/`dim` keyword arguments BAGEL's rotary embedding passes when it has no config.
    """
    torch = importlib.import_module("torch")
    if config is not None and rope_kwargs:
        raise ValueError("pass either a config or rope_kwargs to the default RoPE, not both")
    if rope_kwargs:
        base, dim = rope_kwargs["base"], int(rope_kwargs["dim"])
    else:
        base = config.rope_theta
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        dim = int(head_dim * getattr(config, "partial_rotary_factor", 1.0))
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim
    return 1.0 / (base ** exponents), 1.0


def _prepare_4d_attention_mask(mask, dtype, tgt_len=None):
    """transformers 4.x's: a [batch, source] 0/1 mask as an additive [batch, 1, target, source] mask."""
    torch = importlib.import_module("torch")
    batch, source = mask.size()
    expanded = mask[:, None, None, :].expand(batch, 1, tgt_len or source, source).to(dtype)
    inverted = 1.0 - expanded
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


def bagel_compat() -> list[str]:
    """Provide what BAGEL's checkout imports from transformers 4.x and transformers 5 dropped.

    Only what is missing is added (nothing is replaced), so on transformers 4.x this does nothing.
    Returns the names it provided, for the start-up log and the tests.
    """
    provided = []
    rope_utils = importlib.import_module("transformers.modeling_rope_utils")
    if "default" not in rope_utils.ROPE_INIT_FUNCTIONS:
        rope_utils.ROPE_INIT_FUNCTIONS["default"] = _default_rope_parameters
        provided.append("ROPE_INIT_FUNCTIONS['default']")
    name = "transformers.modeling_attn_mask_utils"
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        module = type(sys)(name)
        module.__doc__ = "transformers 4.x's mask helper, provided by irgl-curation for BAGEL's checkout."
        module._prepare_4d_attention_mask = _prepare_4d_attention_mask
        sys.modules[name] = module
        provided.append(name)
    return provided


def fix_navit_output(navit) -> bool:
    """Make the checkout's `BaseNavitOutputWithPast` constructible again under transformers 5.

    It is a `ModelOutput` dataclass with a `past_key_values` field; transformers 5 renames that
    keyword to `cache` in every ModelOutput's __init__, so BAGEL's own `past_key_values=` raises
    TypeError. BAGEL only builds it in `qwen2_navit` and reads its two attributes, so a plain
    dataclass with the same fields replaces it there. Returns whether it was replaced.
    """
    cls = navit.BaseNavitOutputWithPast
    try:
        cls(packed_query_sequence=None, past_key_values=None)
        return False  # transformers 4.x: nothing to fix
    except TypeError:
        pass

    @dataclasses.dataclass
    class BaseNavitOutputWithPast:
        packed_query_sequence: Any = None
        past_key_values: Any = None

    navit.BaseNavitOutputWithPast = BaseNavitOutputWithPast
    return True


# Attributes every transformers 4.x config had (PretrainedConfig set them, None by default) that
# transformers 5 leaves to each model's own config class; BAGEL's config classes read them.
CONFIG_4X_DEFAULTS = {"pad_token_id": None, "bos_token_id": None, "eos_token_id": None}


def fill_4x_config_defaults(config) -> list[str]:
    """Give a BAGEL config the 4.x defaults it reads and transformers 5 no longer sets; the names set."""
    filled = []
    for name, value in CONFIG_4X_DEFAULTS.items():
        try:
            getattr(config, name)
        except AttributeError:
            setattr(config, name, value)
            filled.append(name)
    return filled


REPO_FILES = ("inferencer.py", "modeling/bagel/__init__.py", "data/transforms.py", "data/data_utils.py")
MODEL_FILES = ("llm_config.json", "vit_config.json", "ae.safetensors", "ema.safetensors", "tokenizer_config.json")
# Modules kept together on the first GPU when the model is spread over several (BAGEL's own list).
SAME_DEVICE_MODULES = ("language_model.model.embed_tokens", "time_embedder", "latent_pos_embed", "vae2llm",
                       "llm2vae", "connector", "vit_pos_embed")


class BagelInProcess(ImageGenerator):
    def __init__(self, repo_dir: str | None, model_dir: str | None, guidance: Mapping[str, Any] | None = None,
                 model_id: str = "ByteDance-Seed/BAGEL-7B-MoT", revision: str | None = None, width: int = 1024,
                 height: int = 1024, think: bool = False, max_think_token_n: int = 1024, do_sample: bool = True,
                 text_temperature: float = 0.3, max_memory_per_gpu: str = "80GiB", offload_folder: str | None = None,
                 concurrency: int = 1):
        # The guidance settings are checked first: a bad one is refused before any path is looked at.
        self.guidance = BagelGuidance.from_config(guidance)
        if not repo_dir or not model_dir:
            raise BackendUnavailable("generator=bagel needs generator.repo_dir=<BAGEL checkout> and "
                                     "generator.model_dir=<BAGEL-7B-MoT weights>")
        self.repo_dir = Path(repo_dir)
        self.model_dir = Path(model_dir)
        self.model_id = model_id
        self.revision = revision
        self.width, self.height = int(width), int(height)
        self.think = bool(think)
        self.max_think_token_n = int(max_think_token_n)
        self.do_sample = bool(do_sample)
        self.text_temperature = float(text_temperature)
        self.max_memory_per_gpu = max_memory_per_gpu
        self.offload_folder = offload_folder
        self.concurrency = concurrency
        self._inferencer = None
        self._torch = None
        self._lock = threading.Lock()  # one model: one generation at a time
        self._dead: str | None = None  # set once the GPU failed: why the run stops

    def hyperparameters(self) -> dict[str, Any]:
        """The keyword arguments of `InterleaveInferencer.__call__` (image size comes per request)."""
        hyper = {"think": self.think, **self.guidance.as_dict()}  # every guidance setting, passed explicitly
        if self.think:  # text sampling settings only matter when BAGEL writes a plan
            hyper.update(max_think_token_n=self.max_think_token_n, do_sample=self.do_sample,
                         text_temperature=self.text_temperature)
        return hyper

    def identity(self) -> dict:
        revision = self.revision or (config_digest(self.model_dir) if self.model_dir.is_dir() else "missing")
        return {"id": self.model_id, "revision": revision,
                "settings": {"width": self.width, "height": self.height, **self.hyperparameters()}}

    # ------------------------------------------------------------------ start-up

    def check(self) -> None:
        self.check_arguments()
        self.check_files()
        torch = self._import_torch()
        if not torch.cuda.is_available():
            raise BackendUnavailable("in-process BAGEL needs a CUDA GPU and torch sees none: run it on a GPU "
                                     "machine, or serve BAGEL with vLLM-Omni and use generator=bagel_omni")
        if importlib.util.find_spec("flash_attn") is None:
            raise BackendUnavailable("in-process BAGEL needs flash-attn, which is not installed: "
                                     "pip install flash-attn --no-build-isolation")
        self._torch = torch
        self._inferencer = self._load()

    def check_arguments(self) -> None:
        for side in (self.width, self.height):
            if side % 16 or not 256 <= side <= 1024:
                raise BackendUnavailable(f"BAGEL image size {self.width}x{self.height}: each side must be a "
                                         "multiple of 16 within 256..1024")
        if self.think and (self.max_think_token_n < 1 or self.text_temperature <= 0):
            raise BackendUnavailable("think mode needs max_think_token_n >= 1 and text_temperature > 0")

    def check_files(self) -> None:
        missing = [f for f in REPO_FILES if not (self.repo_dir / f).is_file()]
        if missing:
            raise BackendUnavailable(f"generator.repo_dir={self.repo_dir} is not a BAGEL checkout (missing "
                                     f"{', '.join(missing)}): git clone https://github.com/ByteDance-Seed/Bagel "
                                     "and point repo_dir at it")
        missing = [f for f in MODEL_FILES if not (self.model_dir / f).is_file()]
        if missing:
            raise BackendUnavailable(f"generator.model_dir={self.model_dir} lacks the BAGEL weights "
                                     f"({', '.join(missing)}): huggingface-cli download "
                                     "ByteDance-Seed/BAGEL-7B-MoT --local-dir <model_dir>")

    @staticmethod
    def _import_torch():
        try:
            return importlib.import_module("torch")
        except ImportError as exc:
            raise BackendUnavailable("in-process BAGEL needs torch: pip install 'irgl-curation[models]'") from exc

    def _load(self, device: str = "cuda"):
        """Build the model from the checkout's own classes, as its inference app does.

        `device` is "cuda" in a run (check() has made sure there is one); "cpu" puts the whole model
        on the CPU, for the load check of a tiny random BAGEL (docs/sources_and_generators.md).
        """
        torch = self._torch
        if str(self.repo_dir) not in sys.path:
            sys.path.insert(0, str(self.repo_dir))  # the checkout's packages are top-level (`data`, `modeling`)
        bagel_compat()  # before its modules are imported: they look these names up at import time
        try:
            accelerate = importlib.import_module("accelerate")
            data_utils = importlib.import_module("data.data_utils")
            transforms = importlib.import_module("data.transforms")
            inferencer_mod = importlib.import_module("inferencer")
            autoencoder = importlib.import_module("modeling.autoencoder")
            bagel = importlib.import_module("modeling.bagel")
            qwen2 = importlib.import_module("modeling.qwen2")
            fix_navit_output(importlib.import_module("modeling.bagel.qwen2_navit"))
        except ImportError as exc:
            raise BackendUnavailable(f"could not import the BAGEL checkout in {self.repo_dir}: {exc} (in-process "
                                     "BAGEL runs in this project's environment plus opencv-python and flash-attn: "
                                     "pip install -c .ci/constraints-bagel.txt opencv-python-headless flash-attn "
                                     "--no-build-isolation; do not install the checkout's requirements.txt, "
                                     "which downgrades torch and transformers)") from exc
        try:
            model_dir = str(self.model_dir)
            llm_config = bagel.Qwen2Config.from_json_file(os.path.join(model_dir, "llm_config.json"))
            fill_4x_config_defaults(llm_config)
            llm_config.qk_norm = True
            llm_config.tie_word_embeddings = False
            llm_config.layer_module = "Qwen2MoTDecoderLayer"
            vit_config = bagel.SiglipVisionConfig.from_json_file(os.path.join(model_dir, "vit_config.json"))
            fill_4x_config_defaults(vit_config)
            vit_config.rope = False
            vit_config.num_hidden_layers -= 1
            vae_model, vae_config = autoencoder.load_ae(local_path=os.path.join(model_dir, "ae.safetensors"))
            config = bagel.BagelConfig(visual_gen=True, visual_und=True, llm_config=llm_config,
                                       vit_config=vit_config, vae_config=vae_config, vit_max_num_patch_per_side=70,
                                       connector_act="gelu_pytorch_tanh", latent_patch_size=2, max_latent_size=64)
            with accelerate.init_empty_weights():
                language_model = bagel.Qwen2ForCausalLM(llm_config)
                vit_model = bagel.SiglipVisionModel(vit_config)
                model = bagel.Bagel(language_model, vit_model, config)
                model.vit_model.vision_model.embeddings.convert_conv2d_to_linear(vit_config, meta=True)
            tokenizer = qwen2.Qwen2Tokenizer.from_pretrained(model_dir)
            tokenizer, new_token_ids, _ = data_utils.add_special_tokens(tokenizer)
            device_map = self._device_map(accelerate, model, torch) if device == "cuda" else {"": device}
            offload = self.offload_folder or os.path.join(tempfile.gettempdir(), "bagel-offload")
            model = accelerate.load_checkpoint_and_dispatch(
                model, checkpoint=os.path.join(model_dir, "ema.safetensors"), device_map=device_map,
                offload_buffers=True, offload_folder=offload, dtype=torch.bfloat16, force_hooks=True).eval()
            vae_model = vae_model.to(device, dtype=torch.bfloat16).eval()
            return inferencer_mod.InterleaveInferencer(
                model=model, vae_model=vae_model, tokenizer=tokenizer,
                vae_transform=transforms.ImageTransform(1024, 512, 16),
                vit_transform=transforms.ImageTransform(980, 224, 14), new_token_ids=new_token_ids)
        except Exception as exc:  # corrupt weights, out of GPU memory, a checkout of another version …
            raise BackendUnavailable(f"could not load BAGEL from {self.model_dir} with the checkout in "
                                     f"{self.repo_dir}: {type(exc).__name__}: {first_line(exc)}") from exc

    def _device_map(self, accelerate, model, torch) -> dict[str, Any]:
        device_map = accelerate.infer_auto_device_map(
            model, max_memory={i: self.max_memory_per_gpu for i in range(torch.cuda.device_count())},
            no_split_module_classes=["Bagel", "Qwen2MoTDecoderLayer"])
        first = device_map.get(SAME_DEVICE_MODULES[0], "cuda:0")
        single_gpu = torch.cuda.device_count() == 1
        for name in SAME_DEVICE_MODULES:
            # With several GPUs, only modules the map already names are moved (as BAGEL's app does).
            if single_gpu or name in device_map:
                device_map[name] = first
        return device_map

    # ------------------------------------------------------------------ work

    def _engine_failures(self) -> tuple[type[BaseException], ...]:
        """The exception types that mean the GPU, not the prompt, failed."""
        torch = self._torch
        return tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch, "AcceleratorError", None))
                     if isinstance(t, type))

    async def generate(self, request: GenerateRequest) -> GeneratedImage | Reject:
        if self._inferencer is None:
            raise BackendUnavailable("BAGEL is not loaded: check() must run before generate()")
        return await asyncio.to_thread(self._generate, request)

    def _generate(self, request: GenerateRequest) -> GeneratedImage | Reject:
        torch = self._torch
        with self._lock:
            if self._dead is not None:  # a CUDA error leaves the context unusable: every later call fails too
                raise BackendFailed(self._dead)
            # The inferencer takes no seed: seed every generator it may draw from, per request.
            random.seed(request.seed)
            importlib.import_module("numpy").random.seed(request.seed)
            torch.manual_seed(request.seed)
            torch.cuda.manual_seed_all(request.seed)
            try:
                result = self._inferencer(text=request.prompt, image_shapes=(request.height, request.width),
                                          **self.hyperparameters())
            except self._engine_failures() as exc:
                # Out of GPU memory at a fixed image size, or a CUDA/accelerator error: no sample
                # would fare better, so the run stops (nothing is stored for this one).
                self._dead = (f"in-process BAGEL failed on the GPU ({type(exc).__name__}: {first_line(exc)}): "
                              "the run stops; fix the cause (memory, driver) and run the same command again")
                raise BackendFailed(self._dead) from exc
            except Exception as exc:  # noqa: BLE001 — this prompt's own failure (tokenizer, shapes …): its sample only
                return Reject(self.role, "generation_error", f"BAGEL failed on this prompt: "
                                                                  f"{type(exc).__name__}: {first_line(exc)}")
        image = result.get("image")
        if image is None:
            return Reject(self.role, "no_image", "BAGEL returned no image for this prompt")
        thinking = result.get("text") if self.think else None
        return GeneratedImage(image=image, thinking=thinking,
                              lineage={"seed": request.seed, "width": request.width, "height": request.height,
                                       "think": self.think})
