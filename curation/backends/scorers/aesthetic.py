"""An aesthetic predictor: a stack of linear layers on the unit CLIP image embedding.

This is the shape the LAION improved aesthetic predictor ships (`sac+logos+ava1-l14-linearMSE.pth`,
a torch state dict): `layers.0` 768→1024, `layers.2` 1024→128, `layers.4` 128→64, `layers.6` 64→16,
`layers.7` 16→1 (the odd indices were dropout, inactive at inference), no activation between them,
applied to the L2-normalised CLIP ViT-L/14 image embedding; its scores run roughly 1–10. Any file
with that structure loads: a `.safetensors` file or a torch state dict (`.pth`, `.pt`, `.bin`) whose
2-D `<name>.weight` tensors (each with its `<name>.bias`) are the layers, in the numeric order of
their names; the first layer's input must match the image embedding, the last layer's output is 1.
`activation: relu` reads the heads trained with ReLU between layers (LAION's `reluMSE` variants).
"""

from __future__ import annotations

import re
from pathlib import Path

from curation.backends.base import BackendUnavailable

ACTIVATIONS = ("none", "relu")


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def load_state_dict(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix in (".pth", ".pt", ".bin"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise BackendUnavailable(f"scorer.aesthetic_head={path} holds a {type(state).__name__}, not a state dict")
        return state
    raise BackendUnavailable(f"scorer.aesthetic_head={path}: give a .safetensors, .pth, .pt or .bin file")


class AestheticHead:
    def __init__(self, path: Path, *, embedding_dim: int, activation: str, device: str):
        import torch

        if activation not in ACTIVATIONS:
            raise BackendUnavailable(f"scorer.aesthetic_activation={activation}: use one of {', '.join(ACTIVATIONS)}")
        if not path.is_file():
            raise BackendUnavailable(f"scorer.aesthetic_head={path} does not exist")
        state = load_state_dict(path)
        names = sorted((k[: -len(".weight")] for k, v in state.items() if k.endswith(".weight") and v.dim() == 2),
                       key=_natural_key)
        if not names:
            raise BackendUnavailable(f"scorer.aesthetic_head={path} has no linear layers (no 2-D *.weight tensors)")
        layers = []
        for name in names:
            weight, bias = state[f"{name}.weight"], state.get(f"{name}.bias")
            if bias is None or bias.shape != weight.shape[:1]:
                raise BackendUnavailable(f"scorer.aesthetic_head={path}: layer {name} has no bias of {weight.shape[0]}")
            layers.append((weight.float().to(device), bias.float().to(device)))
        for (w_prev, _), (w_next, _), name in zip(layers, layers[1:], names[1:]):
            if w_next.shape[1] != w_prev.shape[0]:
                raise BackendUnavailable(f"scorer.aesthetic_head={path}: layer {name} takes {w_next.shape[1]} inputs "
                                         f"but the layer before gives {w_prev.shape[0]}")
        if layers[0][0].shape[1] != embedding_dim:
            raise BackendUnavailable(f"scorer.aesthetic_head={path} takes {layers[0][0].shape[1]}-d embeddings but "
                                     f"scorer.model gives {embedding_dim}-d ones (LAION's head needs CLIP ViT-L/14)")
        if layers[-1][0].shape[0] != 1:
            raise BackendUnavailable(f"scorer.aesthetic_head={path} ends in {layers[-1][0].shape[0]} outputs, not 1")
        self.layers = layers
        self.activation = activation
        self.device = device
        self._torch = torch

    def __call__(self, embeddings) -> list[float]:
        """Scores of unit image embeddings (batch, dim)."""
        torch = self._torch
        x = embeddings.float().to(self.device)
        with torch.inference_mode():
            for i, (weight, bias) in enumerate(self.layers):
                x = torch.nn.functional.linear(x, weight, bias)
                if self.activation == "relu" and i < len(self.layers) - 1:
                    x = torch.relu(x)
        return x[:, 0].cpu().tolist()
