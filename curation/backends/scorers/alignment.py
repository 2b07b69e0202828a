"""Image–text alignment with a CLIP or SigLIP checkpoint (any folder `AutoModel` loads as either).

The score is the cosine similarity of the prompt's and the image's embeddings, both as the model
itself normalises them (`text_embeds`, `image_embeds` of its forward pass). It is the quantity
CLIPScore rescales (Hessel et al. 2021: 2.5 · max(cos, 0)); thresholds are on the raw cosine, whose
range depends on the checkpoint (CLIP ViT-L/14 puts matching pairs near 0.25–0.35, SigLIP lower):
read them off the card's histograms. The unit image embedding is also what semantic dedup compares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from curation.backends.base import BackendUnavailable

# Model types whose forward pass returns normalised `text_embeds` and `image_embeds`.
SUPPORTED_TYPES = ("clip", "siglip")  # SigLIP 2 (flattened patches) is not tested here: not claimed


@dataclass(frozen=True)
class AlignmentBatch:
    alignment: list[float]
    image_embeds: "object"  # torch.Tensor (batch, dim), unit norm, float32 on the CPU


class AlignmentModel:
    def __init__(self, folder: Path, *, device: str, dtype, text_padding: str):
        import torch
        from transformers import AutoConfig, AutoModel, AutoProcessor

        config = AutoConfig.from_pretrained(folder)
        if config.model_type not in SUPPORTED_TYPES:
            raise BackendUnavailable(f"scorer.model={folder} is a {config.model_type!r} model; the alignment scorer "
                                     f"needs an image–text model of type {', '.join(SUPPORTED_TYPES)}")
        if text_padding not in ("longest", "max_length"):
            raise BackendUnavailable(f"scorer.text_padding={text_padding}: use longest (CLIP) or max_length "
                                     "(SigLIP was trained on prompts padded to its maximum length)")
        self.model = AutoModel.from_pretrained(folder, dtype=dtype).to(device).eval()
        self.processor = AutoProcessor.from_pretrained(folder)
        self.device = device
        self.text_padding = text_padding
        tokenizer = self.processor.tokenizer
        positions = getattr(config.text_config, "max_position_embeddings", None) or tokenizer.model_max_length
        # Long prompts are cut to what the text tower can read (CLIP: 77 tokens).
        self.max_text_tokens = min(int(tokenizer.model_max_length), int(positions))
        self.embedding_dim = int(getattr(config, "projection_dim", 0) or config.vision_config.hidden_size)
        self._torch = torch

    def __call__(self, prompts: list[str], images: list[Image.Image]) -> AlignmentBatch:
        torch = self._torch
        inputs = self.processor(text=prompts, images=images, return_tensors="pt", padding=self.text_padding,
                                truncation=True, max_length=self.max_text_tokens)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model(**inputs)
        image = out.image_embeds.float()
        text = out.text_embeds.float()
        # The model normalises both already; again in float32, so half-precision runs stay unit norm.
        image = image / image.norm(dim=-1, keepdim=True)
        text = text / text.norm(dim=-1, keepdim=True)
        alignment = (image * text).sum(dim=-1)
        return AlignmentBatch(alignment=alignment.cpu().tolist(), image_embeds=image.cpu())
