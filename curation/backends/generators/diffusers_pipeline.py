"""`generator=diffusers` / `reference=diffusers`: any local diffusers pipeline folder.

`model_dir` is a folder written by `save_pretrained` (it holds `model_index.json`): Stable
Diffusion, SDXL, SD3, FLUX, Qwen-Image … The pipeline is loaded once at start-up, so missing
weights or a missing package fail before any work. Each request seeds its own
`torch.Generator`, so one sample's image does not depend on which samples ran before it.

Knobs left `null` are not passed, and the pipeline uses its own default; a knob the pipeline
does not take (e.g. `guidance_scale` for a pipeline without it) is refused at start-up.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import threading
import warnings
from pathlib import Path
from typing import Any

from curation.backends.base import BackendUnavailable, GeneratedImage, GenerateRequest, ImageGenerator
from curation.core.records import Reject

DTYPES = ("auto", "float32", "float16", "bfloat16")


def config_digest(folder: Path) -> str:
    """sha256 over a model folder's JSON configs (not its weights: hashing gigabytes at start-up
    is too slow). Two folders with the same configs and different weights need `revision` set."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.json")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class DiffusersGenerator(ImageGenerator):
    def __init__(self, model_dir: str | None, model_id: str | None = None, revision: str | None = None,
                 width: int = 1024, height: int = 1024, num_inference_steps: int | None = 50,
                 guidance_scale: float | None = None, negative_prompt: str | None = None,
                 call_kwargs: dict[str, Any] | None = None, device: str = "auto", dtype: str = "auto",
                 concurrency: int = 1):
        if not model_dir:
            raise BackendUnavailable("diffusers needs model_dir=<diffusers pipeline folder> "
                                     "(generator.model_dir or reference.model_dir)")
        self.model_dir = Path(model_dir)
        self.model_id = model_id or self.model_dir.name
        self.revision = revision
        self.width, self.height = int(width), int(height)
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.negative_prompt = negative_prompt
        self.call_kwargs = dict(call_kwargs or {})
        self.device = device
        self.dtype = dtype
        self.concurrency = concurrency
        self._pipe = None
        self._torch = None
        self._device_name = "cpu"
        self._lock = threading.Lock()  # one pipeline object: never two calls into it at once

    def _call_settings(self) -> dict[str, Any]:
        knobs = {"num_inference_steps": self.num_inference_steps, "guidance_scale": self.guidance_scale,
                 "negative_prompt": self.negative_prompt}
        return {**{k: v for k, v in knobs.items() if v is not None}, **self.call_kwargs}

    def identity(self) -> dict:
        revision = self.revision or (config_digest(self.model_dir) if self.model_dir.is_dir() else "missing")
        return {"id": self.model_id, "revision": revision,
                "settings": {"width": self.width, "height": self.height, "dtype": self.dtype, **self._call_settings()}}

    # ------------------------------------------------------------------ start-up

    def check(self) -> None:
        if self.dtype not in DTYPES:
            raise BackendUnavailable(f"diffusers dtype {self.dtype!r} is not one of {list(DTYPES)}")
        if self.width % 8 or self.height % 8 or min(self.width, self.height) < 8:
            raise BackendUnavailable(f"diffusers image size {self.width}x{self.height} must be positive multiples of 8")
        if not (self.model_dir / "model_index.json").is_file():
            raise BackendUnavailable(f"{self.model_dir} is not a diffusers pipeline folder (no model_index.json): "
                                     "give the folder that `save_pretrained` wrote, or a downloaded model snapshot")
        try:
            torch = importlib.import_module("torch")
            diffusers = importlib.import_module("diffusers")
        except ImportError as exc:
            raise BackendUnavailable(f"the diffusers backend needs torch and diffusers ({exc.name} is missing): "
                                     "pip install 'irgl-curation[models]'") from exc
        self._torch = torch
        device = self._device(torch)
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                 "auto": torch.bfloat16 if device.startswith("cuda") else torch.float32}[self.dtype]
        try:
            with warnings.catch_warnings():
                # `torch_dtype` works in every diffusers we support (>= 0.30); 0.42 prefers `dtype`,
                # which older releases ignore, and warns about the old name until 1.0.
                warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
                pipe = diffusers.DiffusionPipeline.from_pretrained(str(self.model_dir), torch_dtype=dtype,
                                                                   local_files_only=True)
        except Exception as exc:  # missing weights, unknown pipeline class, bad configs …
            raise BackendUnavailable(f"could not load the diffusers pipeline in {self.model_dir}: "
                                     f"{type(exc).__name__}: {first_line(exc)}") from exc
        accepted = set(inspect.signature(pipe.__call__).parameters)
        unknown = sorted(set(self._call_settings()) - accepted)
        if unknown:
            raise BackendUnavailable(f"the {type(pipe).__name__} in {self.model_dir} does not take {unknown}: "
                                     "set those generator knobs to null")
        pipe.set_progress_bar_config(disable=True)
        self._pipe = pipe.to(device)
        self._device_name = device

    def _device(self, torch) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"generator.device={self.device} but torch sees no CUDA device: "
                                     "use device=auto or cpu")
        return self.device

    # ------------------------------------------------------------------ work

    async def generate(self, request: GenerateRequest) -> GeneratedImage | Reject:
        if self._pipe is None:
            raise BackendUnavailable("the diffusers pipeline is not loaded: check() must run before generate()")
        return await asyncio.to_thread(self._generate, request)

    def _generate(self, request: GenerateRequest) -> GeneratedImage | Reject:
        torch = self._torch
        with self._lock:
            generator = torch.Generator(device=self._device_name).manual_seed(request.seed)
            output = self._pipe(prompt=request.prompt, width=request.width, height=request.height,
                                generator=generator, **self._call_settings())
        flagged = getattr(output, "nsfw_content_detected", None)
        if flagged and flagged[0]:
            return Reject(self.role, "safety_filtered", "the pipeline's safety checker blanked the image")
        return GeneratedImage(image=output.images[0],
                              lineage={"seed": request.seed, "width": request.width, "height": request.height})
