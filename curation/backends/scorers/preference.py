"""A human-preference reward model shaped like CLIP: PickScore (`yuvalkirstain/PickScore_v1`).

PickScore is CLIP ViT-H/14 fine-tuned on Pick-a-Pic's human choices between two images for one
prompt. Its score is CLIP's logit: `logit_scale.exp() * cos(text, image)`, the cosine of the
model's normalised text and image embeddings times its learnt temperature (PickScore's is ~100,
so scores run ~18–24 for typical text-to-image outputs; only differences between images for one
prompt are meaningful, which is how the `improvement` stage uses it). The checkpoint ships no
tokenizer or image processor: PickScore's authors load them from
`laion/CLIP-ViT-H-14-laion2B-s32B-b79K`, which `scorer.preference_processor` names.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from curation.backends.base import BackendUnavailable

MAX_TEXT_TOKENS = 77  # CLIP's text positions; PickScore's processor call truncates there


class PreferenceModel:
    def __init__(self, folder: Path, processor_folder: Path, *, device: str, dtype):
        import torch
        from transformers import AutoConfig, AutoModel, AutoProcessor

        config = AutoConfig.from_pretrained(folder)
        if config.model_type != "clip":
            raise BackendUnavailable(f"scorer.preference_model={folder} is a {config.model_type!r} model; the "
                                     "preference scorer reads a CLIP-shaped reward model (PickScore)")
        try:
            self.processor = AutoProcessor.from_pretrained(processor_folder)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"scorer.preference_processor={processor_folder} holds no CLIP processor "
                                     f"(PickScore uses laion/CLIP-ViT-H-14-laion2B-s32B-b79K's): {exc}") from None
        self.model = AutoModel.from_pretrained(folder, dtype=dtype).to(device).eval()
        self.device = device
        self._torch = torch

    def __call__(self, prompts: list[str], images: list[Image.Image]) -> list[float]:
        torch = self._torch
        inputs = self.processor(text=prompts, images=images, return_tensors="pt", padding=True, truncation=True,
                                max_length=MAX_TEXT_TOKENS)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model(**inputs)
            scale = self.model.logit_scale.float().exp()
        # Normalised again in float32, as in alignment.py, so half-precision runs stay unit norm.
        image = torch.nn.functional.normalize(out.image_embeds.float(), dim=-1)
        text = torch.nn.functional.normalize(out.text_embeds.float(), dim=-1)
        return (scale * (image * text).sum(dim=-1)).cpu().tolist()
