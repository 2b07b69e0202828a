"""Tiny random CLIP, SigLIP and image classifier saved to folders: real architectures, no download.

The text side uses the real CLIP tokenizer class over a character-level vocabulary built here
(every byte-level character, alone and as a word end, plus CLIP's special tokens), so any prompt
tokenizes; the image processors are the real ones at 32×32. Weights are random: the tests plant the
scores they need by setting the last linear layers (`plant_*`), never by trusting random outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SIDE = 32
HIDDEN = 32
PROJECTION = 24


def _char_vocab() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = sorted(set(bytes_to_unicode().values()))
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    return {t: i for i, t in enumerate(tokens)}


def clip_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=_char_vocab(), merges=[], model_max_length=77)


def _text_config(vocab_size: int) -> dict:
    return {"vocab_size": vocab_size, "hidden_size": HIDDEN, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "max_position_embeddings": 77}


def _vision_config() -> dict:
    return {"hidden_size": HIDDEN, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "image_size": IMAGE_SIDE, "patch_size": 8}


def build_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = clip_tokenizer()
    text = _text_config(len(tokenizer)) | {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    config = CLIPConfig(text_config=text, vision_config=_vision_config(), projection_dim=PROJECTION)
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIDE},
                                         crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return Path(folder)


def build_tiny_siglip(folder: Path, *, seed: int = 0) -> Path:
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    tokenizer = clip_tokenizer()
    tokenizer.model_max_length = 16  # SigLIP pads every prompt to its maximum length
    text = _text_config(len(tokenizer)) | {"max_position_embeddings": 16, "pad_token_id": 1, "eos_token_id": 1,
                                           "bos_token_id": 0}
    config = SiglipConfig(text_config=text, vision_config=_vision_config())
    torch.manual_seed(seed)
    SiglipModel(config).eval().save_pretrained(folder)
    image_processor = SiglipImageProcessor(size={"height": IMAGE_SIDE, "width": IMAGE_SIDE})
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return Path(folder)


def build_tiny_classifier(folder: Path, labels=("normal", "nsfw"), *, seed: int = 0) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       image_size=IMAGE_SIDE, patch_size=8, num_labels=len(labels),
                       id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    torch.manual_seed(seed)
    ViTForImageClassification(config).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}).save_pretrained(folder)
    return Path(folder)


# ----------------------------------------------------------------------------- planting scores


def _solve(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """W with features @ W.T == targets exactly (features: n × h with n ≤ h, full row rank)."""
    solution, *_ = np.linalg.lstsq(features.astype(np.float64), targets.astype(np.float64), rcond=None)
    return solution.T


def plant_clip_alignment(folder: Path, prompts, images, alignments) -> None:
    """Set CLIP's two projections so that image i and prompt i have cosine `alignments[i]` exactly.

    Image i is sent to the unit vector e_i and prompt i to a_i·e_i + sqrt(1 − a_i²)·e_{n+i}: distinct
    images stay apart (orthogonal embeddings), and each pair's cosine is the planted value.
    """
    import torch
    from transformers import CLIPModel, CLIPProcessor

    n = len(prompts)
    assert 2 * n <= PROJECTION and n <= HIDDEN
    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    inputs = processor(text=list(prompts), images=list(images), return_tensors="pt", padding="longest",
                       truncation=True, max_length=77)
    with torch.inference_mode():
        pooled_image = model.vision_model(pixel_values=inputs["pixel_values"]).pooler_output.numpy()
        pooled_text = model.text_model(input_ids=inputs["input_ids"],
                                       attention_mask=inputs["attention_mask"]).pooler_output.numpy()
    image_targets = np.zeros((n, PROJECTION))
    text_targets = np.zeros((n, PROJECTION))
    for i, a in enumerate(alignments):
        image_targets[i, i] = 1.0
        text_targets[i, i] = a
        text_targets[i, n + i] = np.sqrt(1 - a * a)
    with torch.no_grad():
        model.visual_projection.weight.copy_(torch.from_numpy(_solve(pooled_image, image_targets)))
        model.text_projection.weight.copy_(torch.from_numpy(_solve(pooled_text, text_targets)))
    model.save_pretrained(folder)


def plant_aesthetic_head(path: Path, embeddings: np.ndarray, scores, *, laion_shape: bool = False) -> None:
    """A head whose output for embedding i is `scores[i]`: a linear map solved for them, saved either as
    one layer or in LAION's five-layer shape (`layers.0/2/4/6/7`, smaller widths), where the first
    layer computes the map into its first unit and the others carry that unit through."""
    import torch
    from safetensors.torch import save_file

    weight = torch.tensor(_solve(embeddings, np.asarray(scores)[:, None]), dtype=torch.float32)  # 1 × d
    if not laion_shape:
        state = {"layers.0.weight": weight, "layers.0.bias": torch.zeros(1)}
    else:
        widths = [embeddings.shape[1], 40, 30, 20, 8, 1]  # LAION: 768, 1024, 128, 64, 16, 1
        state = {}
        for name, w_in, w_out in zip(("0", "2", "4", "6", "7"), widths, widths[1:]):
            layer = torch.zeros(w_out, w_in)
            if name == "0":
                layer[0] = weight[0]
            else:
                layer[0, 0] = 1.0
            state[f"layers.{name}.weight"] = layer
            state[f"layers.{name}.bias"] = torch.zeros(w_out)
    if str(path).endswith(".safetensors"):
        save_file(state, str(path))
    else:
        torch.save(state, path)


def plant_unsafe(folder: Path, images, unsafe_logits) -> None:
    """Set the classifier's last layer so that image i gets logit `unsafe_logits[i]` for `nsfw`, 0 for
    `normal`: its unsafe probability is sigmoid(logit)."""
    import torch
    from transformers import ViTForImageClassification, ViTImageProcessor

    model = ViTForImageClassification.from_pretrained(folder).eval()
    processor = ViTImageProcessor.from_pretrained(folder)
    pixels = processor(images=list(images), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        hidden = model.vit(pixel_values=pixels).last_hidden_state[:, 0].numpy()  # what the classifier reads
    targets = np.zeros((len(images), 2))
    targets[:, 1] = unsafe_logits
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(_solve(hidden, targets)))
        model.classifier.bias.zero_()
    model.save_pretrained(folder)
