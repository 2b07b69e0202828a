"""Where a scorer's weights come from, which revision they are, and where they run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from curation.backends.base import BackendUnavailable


def model_folder(path: str | None, knob: str, example: str) -> Path:
    """A local Hugging Face model folder, or one sentence saying how to get one."""
    if not path:
        raise BackendUnavailable(f"{knob} is not set: give a local model folder "
                                 f"(e.g. `hf download {example} --local-dir <folder>`)")
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise BackendUnavailable(f"{knob}={path} is not a Hugging Face model folder (no config.json): "
                                 f"download one with `hf download {example} --local-dir <folder>`")
    return folder


def folder_revision(folder: Path) -> str:
    """The Hub commit when the folder is a Hub snapshot, else a fingerprint of its config and weights.

    A snapshot in the Hub cache lives under `snapshots/<commit>/`. Otherwise: the config and the
    weight files' names and sizes (hashing gigabytes of weights at every start would take a while);
    that catches a swapped model. Set the scorer's `*_revision` knob to pin a real revision.
    """
    if folder.parent.name == "snapshots" and len(folder.name) == 40:
        return folder.name
    digest = hashlib.sha256()
    for name in ("config.json", "preprocessor_config.json"):
        path = folder / name
        if path.is_file():
            digest.update(json.dumps(json.loads(path.read_text()), sort_keys=True).encode())
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return "local-" + digest.hexdigest()[:16]


def file_revision(path: Path) -> str:
    """A small weight file (an aesthetic head, a few MB) is identified by its content."""
    return "sha256-" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def resolve_device(setting: str) -> str:
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"scorer.device={setting} but no CUDA device is visible: use device=auto or cpu")
    return setting


def resolve_dtype(setting: str, device: str):
    import torch

    if setting == "auto":  # half precision on a GPU; CPUs are slow in it
        return torch.float16 if device.startswith("cuda") else torch.float32
    choices = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if setting not in choices:
        raise BackendUnavailable(f"scorer.dtype={setting}: use auto, {', '.join(choices)}")
    return choices[setting]
