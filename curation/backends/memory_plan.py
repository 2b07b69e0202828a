"""One GPU, several in-process models: how much memory each gets, decided before any of them loads.

`teacher=vllm` takes a fixed fraction of the whole GPU (`engine.gpu_memory_utilization`, 0.9 by
default) and refuses to start when less than that is free. Beside it, in-process BAGEL
(`generator=bagel`), a diffusers pipeline (`reference=`/`generator=diffusers`) or the CLIP scorer
(`scorer=clip`/`siglip`) and the transformers teacher each need their weights' worth. Without a
plan, whichever loads first takes its memory and the next one fails, minutes into loading.

So before any backend is built, the models that will sit on the GPU are sized from what is on disk:
the parameter count in their safetensors files' headers (read without loading a tensor) times the
bytes per parameter they are loaded in, plus `gpu_memory.margin` (activations, allocator slack) and
`gpu_memory.overhead_gb` (CUDA context, kernels) each; vLLM also needs `gpu_memory.vllm_min_kv_gb`
of KV cache beyond its weights. A model whose weights cannot be read here (a Hub id rather than a
folder) needs its size declared: `gpu_memory.need_gb.<role>=<GB>`. vLLM gets the share of the GPU
the others leave (never more than its configured share); when that is less than it needs, or when
the others alone do not fit, the run stops with one sentence naming the numbers.

The plan is a pure function of the configuration and the device's total memory (`plan_gpu_memory`);
`gpu_total_gb` reads the latter from torch (or `gpu_memory.total_gb`). It assumes the models share
GPU 0 (one GPU, the case where loading order decides).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from curation.backends.base import BackendUnavailable

# The backends that hold a model on the GPU in this process, by their `_target_`.
VLLM = "curation.backends.teachers.vllm_inprocess.VllmTeacher"
BAGEL = "curation.backends.generators.bagel_inprocess.BagelInProcess"
DIFFUSERS = "curation.backends.generators.diffusers_pipeline.DiffusersGenerator"
SCORER = "curation.backends.scorers.transformers_scorer.TransformersScorer"
HF_TEACHER = "curation.backends.teachers.transformers_local.TransformersTeacher"
GPU_TARGETS = (VLLM, BAGEL, DIFFUSERS, SCORER, HF_TEACHER)
# Bytes per parameter of the dtypes these backends load in (`auto` on a GPU: 16-bit).
DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}
# safetensors dtype names and their bytes, to count parameters from a header.
ST_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
            "F8_E4M3": 1, "F8_E5M2": 1}
GB = 1024 ** 3


@dataclass(frozen=True)
class Settings:
    margin: float
    overhead_gb: float
    vllm_min_kv_gb: float
    need_gb: Mapping[str, float]

    @classmethod
    def from_config(cls, node: Mapping[str, Any]) -> "Settings":
        return cls(margin=float(node["margin"]), overhead_gb=float(node["overhead_gb"]),
                   vllm_min_kv_gb=float(node["vllm_min_kv_gb"]),
                   need_gb={str(k): float(v) for k, v in dict(node.get("need_gb") or {}).items() if v is not None})


@dataclass(frozen=True)
class GpuModel:
    role: str
    target: str
    need_gb: float | None  # None: its weights could not be read here and no size was declared
    how: str  # where the number comes from, for the sentence and the log


@dataclass(frozen=True)
class MemoryPlan:
    total_gb: float
    models: tuple[GpuModel, ...]
    vllm_share: float | None  # the gpu_memory_utilization vLLM is given, when it is one of them

    def describe(self) -> str:
        parts = ", ".join(f"{m.role} {m.need_gb:.1f} GB ({m.how})" for m in self.models)
        share = f"; vLLM gpu_memory_utilization {self.vllm_share:.2f}" if self.vllm_share is not None else ""
        return f"GPU memory plan on {self.total_gb:.1f} GB: {parts}{share}"


def safetensors_parameters(path: Path) -> int:
    """The number of parameters in one safetensors file, from its header alone."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")


def folder_parameters(folder: Path) -> int | None:
    """Parameters in a model folder's safetensors (a variant such as `x.fp16.safetensors` is a copy of
    `x.safetensors`: counted only when no plain file exists); None when there are none to read."""
    files = sorted(folder.rglob("*.safetensors")) if folder.is_dir() else []
    plain = [f for f in files if "." not in f.name[:-len(".safetensors")]]
    chosen = plain or files
    return sum(safetensors_parameters(f) for f in chosen) if chosen else None


def _folders(target: str, node: Mapping[str, Any]) -> list[str | None]:
    if target == BAGEL:
        return [node.get("model_dir")]
    if target == DIFFUSERS or target == HF_TEACHER:
        return [node.get("model_dir")]
    if target == SCORER:
        return [node.get("model"), node.get("aesthetic_head"), node.get("safety_model")]
    return [node.get("model")]  # vLLM: a folder, or a Hub id that cannot be read here


def on_gpu(target: str, node: Mapping[str, Any]) -> bool:
    if target not in GPU_TARGETS:
        return False
    device = str(node.get("device", "cuda"))
    return device in ("auto", "cuda", "cuda:0")


def size_model(role: str, target: str, node: Mapping[str, Any], settings: Settings) -> GpuModel:
    """What one model needs on the GPU, from a declared size or its weights' headers."""
    if role in settings.need_gb:
        return GpuModel(role, target, settings.need_gb[role], f"gpu_memory.need_gb.{role}")
    folders = [Path(str(f)) for f in _folders(target, node) if f]
    try:
        counts = [folder_parameters(f) if f.is_dir() else (safetensors_parameters(f) if f.suffix == ".safetensors"
                                                           and f.is_file() else None) for f in folders]
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        # A header that does not parse: the backend's own check names the broken file when it loads.
        counts = [None]
    if not folders or counts[0] is None:
        return GpuModel(role, target, None, "weights not readable here")
    params = sum(c for c in counts if c)
    per = 2 if target in (BAGEL, VLLM) else DTYPE_BYTES.get(str(node.get("dtype", "auto")), 2)
    weights = params * per / GB
    need = weights * (1 + settings.margin) + settings.overhead_gb
    how = f"{params / 1e9:.2f}B parameters x {per} bytes + {settings.margin:.0%} + {settings.overhead_gb:g} GB"
    if target == VLLM:
        need += settings.vllm_min_kv_gb
        how += f" + {settings.vllm_min_kv_gb:g} GB KV cache"
    return GpuModel(role, target, need, how)


def plan_gpu_memory(nodes: Mapping[str, Mapping[str, Any]], total_gb: float, settings: Settings) -> MemoryPlan | None:
    """The memory plan for the in-process GPU models among `nodes` (role -> config), or None when
    fewer than two share the GPU. Raises BackendUnavailable, one sentence, when they cannot fit."""
    models = tuple(size_model(role, str(node["_target_"]), node, settings) for role, node in sorted(nodes.items())
                   if on_gpu(str(node.get("_target_")), node))
    if len(models) < 2:
        return None
    names = ", ".join(f"{m.role}={m.target.rsplit('.', 1)[1]}" for m in models)
    unknown = [m.role for m in models if m.need_gb is None]
    if unknown:
        raise BackendUnavailable(
            f"{names} share one GPU and the weights of {', '.join(unknown)} cannot be read here to size it: "
            f"point it at a local folder, or declare its need, e.g. gpu_memory.need_gb.{unknown[0]}=<GB>")
    vllm = [m for m in models if m.target == VLLM]
    others = [m for m in models if m.target != VLLM]
    others_gb = sum(m.need_gb for m in others)
    detail = ", ".join(f"{m.role} {m.need_gb:.1f}" for m in others)
    if others_gb > total_gb:
        raise BackendUnavailable(f"{names} cannot share this {total_gb:.1f} GB GPU: they need {others_gb:.1f} GB "
                                 f"({detail}); run one of them elsewhere (a server) or on another GPU")
    if not vllm:
        return MemoryPlan(total_gb, models, None)
    teacher = vllm[0]
    configured = float(nodes[teacher.role].get("engine", {}).get("gpu_memory_utilization", 0.9))
    share = math.floor(min(configured, (total_gb - others_gb) / total_gb) * 100) / 100
    if share * total_gb < teacher.need_gb:
        raise BackendUnavailable(
            f"{names} cannot share this {total_gb:.1f} GB GPU: the others need {others_gb:.1f} GB ({detail}), "
            f"which leaves vLLM {share * total_gb:.1f} GB (gpu_memory_utilization {share:.2f}) of the "
            f"{teacher.need_gb:.1f} GB its weights and KV cache need; use teacher=vllm_server on another GPU")
    return MemoryPlan(total_gb, models, share)


def gpu_total_gb(configured: float | None) -> float | None:
    """GPU 0's memory in GB: the configured value, else torch's, else None (no CUDA: nothing to plan)."""
    if configured is not None:
        return float(configured)
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / GB


def needs_plan(nodes: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether two or more of these backends would hold a model on the GPU (checked before torch is imported)."""
    return sum(on_gpu(str(n.get("_target_")), n) for n in nodes.values()) >= 2


def plan_for(nodes: Mapping[str, Any], roles: Iterable[str], gpu_memory: Mapping[str, Any],
             total_gb: float | None = None) -> MemoryPlan | None:
    """The plan for the backends of `roles` (None: fewer than two on the GPU, or no GPU here, where each
    backend's own check says what it lacks). `total_gb` is injected by tests; else read as above."""
    chosen = {r: nodes[r] for r in set(roles) if nodes.get(r) is not None and "_target_" in nodes[r]}
    if not needs_plan(chosen):
        return None
    total = total_gb if total_gb is not None else gpu_total_gb(gpu_memory.get("total_gb"))
    if total is None:
        return None
    return plan_gpu_memory(chosen, total, Settings.from_config(gpu_memory))


def vllm_role(plan: MemoryPlan) -> str | None:
    return next((m.role for m in plan.models if m.target == VLLM), None)
