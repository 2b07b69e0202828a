"""A safety classifier: any image-classification checkpoint (`AutoModelForImageClassification`).

The unsafe score is the probability of the labels named in `unsafe_labels` (for
Falconsai/nsfw_image_detection: `nsfw`; its other label is `normal`): the sum of their softmax
probabilities for a single-label classifier, their largest sigmoid for a multi-label one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image

from curation.backends.base import BackendUnavailable


class SafetyClassifier:
    def __init__(self, folder: Path, *, unsafe_labels: Sequence[str], device: str, dtype):
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.model = AutoModelForImageClassification.from_pretrained(folder, dtype=dtype).to(device).eval()
        self.processor = AutoImageProcessor.from_pretrained(folder)
        labels = {str(name): int(i) for i, name in self.model.config.id2label.items()}
        if not unsafe_labels:
            raise BackendUnavailable("scorer.unsafe_labels is empty: name the classifier's labels that mean unsafe "
                                     f"(its labels: {', '.join(sorted(labels))})")
        missing = [name for name in unsafe_labels if name not in labels]
        if missing:
            raise BackendUnavailable(f"scorer.unsafe_labels names {', '.join(missing)}, which the classifier at "
                                     f"{folder} does not have (its labels: {', '.join(sorted(labels))})")
        self.unsafe_ids = [labels[name] for name in unsafe_labels]
        self.multi_label = self.model.config.problem_type == "multi_label_classification"
        self.device = device
        self._torch = torch

    def __call__(self, images: list[Image.Image]) -> list[float]:
        torch = self._torch
        inputs = self.processor(images=images, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.model.dtype)
        with torch.inference_mode():
            logits = self.model(pixel_values=pixels).logits.float()
        if self.multi_label:
            unsafe = torch.sigmoid(logits[:, self.unsafe_ids]).max(dim=-1).values
        else:
            unsafe = torch.softmax(logits, dim=-1)[:, self.unsafe_ids].sum(dim=-1)
        return unsafe.cpu().tolist()
