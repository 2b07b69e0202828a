"""A tiny random Qwen2.5-VL saved to a folder: the real architecture and processor, no download.

The tokenizer is a byte-level BPE trained here on a few sentences (so any text round-trips), with
Qwen's special tokens; the image processor is the real Qwen2-VL one, so images are cut into
14×14 patches and merged 2×2 exactly as in the full model (one token per 28×28 pixels). Weights
are random: the model writes gibberish, which is what the tests need to see rejected — unless
`train_to_write_thinkings` overfits it, in seconds, to answer every teacher request with one fixed
valid thinking of the right kind (what a test of accepted rows through a real server needs).
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]

# Qwen2-VL's chat template, reduced to what the teachers send: text and image parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image_url' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "a photo of two red balls next to a blue cube on a wooden table",
    "<think> plan the composition, the lighting, the colours and the texture </think>",
    "### Detailed Explanation of Required Improvements: ### Step-by-Step Modification Guidance:",
    "### Final Comprehensive Prompt for the Improved Image: keep the content and fix the details",
    "Write the thinking a painter would have before creating this picture, step by step.",
] * 4


def train_tokenizer(vocab_size: int = 400, corpus: list[str] = CORPUS):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


# vLLM's CPU attention serves head sizes of 32 and up (CPUAttentionBackend.get_supported_head_sizes),
# so a model for the real engine needs wider heads than the default 32/4 = 8; mrope_section splits
# half of the head size (16) into Qwen2.5-VL's temporal, height and width parts.
VLLM_CPU_DIMS = {"hidden": 64, "heads": 2, "kv_heads": 1, "mrope_section": (4, 6, 6)}


def build_tiny_qwen25_vl(folder: Path, *, seed: int = 0, corpus: list[str] = CORPUS, vocab_size: int = 400,
                         phrases: tuple[str, ...] = (), hidden: int = 32, heads: int = 4, kv_heads: int = 2,
                         mrope_section: tuple[int, ...] = (1, 1, 2), generation: dict | None = None) -> Path:
    """Write config, random weights, tokenizer and processor to `folder`; returns it.

    `phrases` become tokens of their own (plain text, not special): a model can then write each
    of them in one step. `generation` adds fields to generation_config.json (a checkpoint's own
    sampling defaults, such as Qwen2.5-VL's `top_k: 1`, which an engine may apply to whatever a
    request leaves out).
    """
    import torch
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    raw = train_tokenizer(vocab_size, corpus)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=SPECIAL_TOKENS[1:])
    if phrases:
        from tokenizers import AddedToken

        tokenizer.add_tokens([AddedToken(p, special=False, normalized=False) for p in phrases])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2,
            "num_attention_heads": heads, "num_key_value_heads": kv_heads, "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": list(mrope_section)},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": hidden,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    for name, value in (generation or {}).items():
        setattr(model.generation_config, name, value)
    model.save_pretrained(folder)

    # The processor's own pixel bounds stay wide: the teacher's `max_pixels` is what must decide.
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=1024 * 28 * 28)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------- a tiny model that writes valid thinkings

# One valid thinking of each kind (curation/core/thinking_checks.py): tags, length, the improving
# thinking's opening paragraph and three headed sections in order, no leak of the target image.
INITIAL_ANSWER = ("<think>\nPlace the main subject in the centre of the frame, light it softly from the left, "
                  "keep the background plain and the colours bright, then add fine texture.\n</think>")
# Four valid initial thinkings: a model trained on all of them (`initial_answers`) writes each a quarter
# of the time, so a sampled answer depends on the seed, and an engine that decodes greedily (or with
# top_k 1) writes the same one for every sample. Four, not two: eight seeded samples then all come out
# alike with chance 4 × 4^-8 ≈ 6e-5 (two answers: 1/128, and a run's seeds are fixed, so an unlucky
# set fails every time; it did).
INITIAL_ANSWERS = (
    INITIAL_ANSWER,
    "<think>\nFrame the subject from slightly below, warm the light, keep the palette soft and the edges "
    "clean, then add detail to every surface.\n</think>",
    "<think>\nSet the scene at eye level, give it a clear horizon, use a cool morning light and let the "
    "shadows fall long towards the viewer.\n</think>",
    "<think>\nFill the frame with the subject, blur the background, pick two strong contrasting colours "
    "and keep every outline sharp and simple.\n</think>",
)
IMPROVING_ANSWER = ("<think>\nThe current picture is dim and its main subject sits too far to the left.\n"
                    "### Detailed Explanation of Required Improvements:\nThe subject should be centred and "
                    "lit brightly, with crisper textures.\n### Step-by-Step Modification Guidance:\n"
                    "1. Move the subject to the centre. 2. Brighten the light. 3. Sharpen the textures.\n"
                    "### Final Comprehensive Prompt for the Improved Image:\nThe same scene with the subject "
                    "centred, brightly lit and finely textured.\n</think>")


def _requests(count: int, seed: int) -> list[tuple[str, list, list]]:
    """`count` teacher requests of each kind, as the teacher sends them: (system, user parts, images)."""
    import random

    from PIL import Image

    from curation.core.templates import load_template

    rng = random.Random(seed)
    initial = load_template("teacher_initial_thinking", placeholders={"prompt"}, images={"hq_image"})
    improving = load_template("teacher_improving_thinking", placeholders={"prompt", "improving_initial_thinking"},
                              images={"initial_image", "hq_image"})
    words = ("red", "blue", "green", "ball", "cube", "cone", "two", "three", "on a table", "in a field", "at dusk")
    out = []
    for _ in range(count):
        prompt = "a photo of " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 7)))

        def picture():
            return Image.new("RGB", (56, 56), tuple(rng.randrange(256) for _ in range(3)))

        improving_values = {"prompt": prompt, "improving_initial_thinking": INITIAL_ANSWER}
        for template, values, kind in ((initial, {"prompt": prompt}, "initial"),
                                       (improving, improving_values, "improving")):
            parts = template.render(values)
            out.append((template.system, parts, [picture() for kind_, _ in parts if kind_ == "image"], kind))
    return out


def build_thinking_tiny_qwen(folder: Path, *, steps: int = 200, seed: int = 0,
                             initial_answers: tuple[str, ...] = (INITIAL_ANSWER,), **dims) -> Path:
    """A tiny Qwen2.5-VL that, greedy, answers every initial-thinking request with INITIAL_ANSWER and
    every improving-thinking request with IMPROVING_ANSWER: valid thinkings, through any server.

    Cheap by construction, so a fixture can afford it on a 2-core CPU: each answer is one token of
    its own (`phrases`), and the tokenizer is trained on the teacher's templates, so a request is a
    few hundred tokens; the model is then overfitted (a few dozen Adam steps, seconds) to tell the
    two templates apart and answer with the right token, then `<|im_end|>`. With several
    `initial_answers` it writes each with equal probability on any prompt (greedy: one of them, always
    the same).
    `dims` go to
    `build_tiny_qwen25_vl` (VLLM_CPU_DIMS for vLLM's CPU engine; `generation` for a checkpoint's
    sampling defaults).
    """
    import yaml

    from curation.core.paths import templates_dir

    corpus = list(CORPUS)
    for name in ("teacher_initial_thinking", "teacher_improving_thinking"):
        doc = yaml.safe_load((templates_dir() / f"{name}.yaml").read_text())
        corpus += [doc["system"]] * 4 + [part["text"] for part in doc["user"] if "text" in part] * 4
    build_tiny_qwen25_vl(folder, seed=seed, corpus=corpus, vocab_size=1500,
                         phrases=(*initial_answers, IMPROVING_ANSWER), **dims)
    return train_to_write_thinkings(folder, steps=steps, seed=seed, initial_answers=initial_answers)


def train_to_write_thinkings(folder: Path, *, steps: int = 400, seed: int = 0,
                             initial_answers: tuple[str, ...] = (INITIAL_ANSWER,)) -> Path:
    """Overfit the tiny model in `folder` so that, greedy, it answers every initial-thinking request
    with INITIAL_ANSWER and every improving-thinking request with IMPROVING_ANSWER.

    The two requests differ in their templates (and in one image against two), which is all the
    model has to tell apart; the answer is then recalled token by token. A few hundred Adam steps
    on a handful of requests of each kind take seconds on a CPU. Saved in place. Each initial
    request is trained once per answer of `initial_answers`, so their probabilities come out equal.
    """
    import math

    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(folder)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder)
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    groups, floors = [], []  # one optimizer step per group: a request with each of its answers
    for system, parts, pictures, kind in _requests(2, seed):
        content = [{"type": "text", "text": value} if part == "text" else {"type": "image"} for part, value in parts]
        messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[text], images=pictures, return_tensors="pt")
        answers = initial_answers if kind == "initial" else (IMPROVING_ANSWER,)
        group = []
        for target in answers:
            answer = processor.tokenizer(target, return_tensors="pt").input_ids
            answer = torch.cat([answer, torch.tensor([[eos]])], dim=1)
            prompt_len = inputs["input_ids"].shape[1]
            ids = torch.cat([inputs["input_ids"], answer], dim=1)
            labels = torch.full_like(ids, -100)
            labels[:, prompt_len:] = answer
            batch = {**inputs, "input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
            for name, value in inputs.items():  # per-token side inputs (mm_token_type_ids): the answer is text, 0
                if name not in ("input_ids", "attention_mask") and value.dim() == 2 and value.shape[1] == prompt_len:
                    batch[name] = torch.cat([value, torch.zeros_like(answer)], dim=1)
            group.append(batch)
        groups.append(group)
        # The lowest loss the group can reach: the first answer token is one of len(answers), equally likely.
        floors.append(math.log(len(answers)) / answer.shape[1])
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    model.train()
    worst = 0.0
    for step in range(steps):
        i = step % len(groups)
        optimizer.zero_grad()
        # The answers of one request in one step (their mean loss): alternating steps would pull the
        # model towards one answer and back, and never settle at equal probabilities.
        loss = sum(model(**batch).loss for batch in groups[i]) / len(groups[i])
        loss.backward()
        optimizer.step()
        worst = max(worst, loss.item() - floors[i])
        if i == len(groups) - 1:
            if worst < 1e-2:  # every group of this pass within 0.01 of its floor
                break
            worst = 0.0
    model.eval()
    if len(initial_answers) > 1:
        _split_evenly(model, processor, initial_answers, seed)
    model.save_pretrained(folder)
    return folder


def _split_evenly(model, processor, answers: tuple[str, ...], seed: int) -> None:
    """Give the answers' first tokens one and the same output row, so their logits are equal on every
    prompt: training brings them near an even split on its own prompts only, and on a run's prompts
    the split drifts (seen: 8 samples at temperature 0.7, all one answer). Then check it on prompts
    training never saw: each answer about equally likely, and together nearly certain."""
    import torch

    firsts = [processor.tokenizer(answer).input_ids[0] for answer in answers]
    head = model.get_output_embeddings().weight
    with torch.no_grad():
        head[firsts] = head[firsts].mean(dim=0, keepdim=True)
    for system, parts, pictures, kind in _requests(3, seed + 1):
        if kind != "initial":
            continue
        content = [{"type": "text", "text": value} if part == "text" else {"type": "image"} for part, value in parts]
        messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        with torch.no_grad():
            logits = model(**processor(text=[text], images=pictures, return_tensors="pt")).logits[0, -1]
        chances = torch.softmax(logits.float(), dim=-1)[firsts]
        if chances.sum() < 0.9 or (chances.max() - chances.min()) > 1e-3:
            raise AssertionError(f"the tiny model's first-token chances of its {len(answers)} initial answers on "
                                 f"an unseen prompt are {chances.tolist()}: not an even split of nearly all")


# ----------------------------------------------------------------------------- a tiny random Qwen3-VL

def build_tiny_qwen3_vl(folder: Path, *, seed: int = 0, hidden: int = 32, heads: int = 4, kv_heads: int = 2,
                        head_dim: int = 8, mrope_section: tuple[int, ...] = (1, 1, 2)) -> Path:
    """A tiny random Qwen3-VL: the real architecture and processor, whose vision tower cuts 16×16
    patches and merges them 2×2, so one token per 32×32 pixels (Qwen2.5-VL: 28×28).

    vLLM's CPU attention serves head sizes of 32 and up: for the real engine use hidden=64, heads=2,
    kv_heads=1, head_dim=32, mrope_section=(4, 6, 6) (its parts sum to half the head size)."""
    import torch
    from transformers import (PreTrainedTokenizerFast, Qwen2VLImageProcessor, Qwen3VLConfig,
                              Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(), eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", additional_special_tokens=SPECIAL_TOKENS[1:])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": 2, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "head_dim": head_dim, "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": list(mrope_section),
                                "mrope_interleaved": True},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": hidden,
            "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 64,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder)
    # As Qwen3-VL's preprocessor_config.json: 16-pixel patches merged 2×2; wide pixel bounds, so the
    # teacher's budget is what decides.
    image_processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2,
                                            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
                                            size={"shortest_edge": 32 * 32, "longest_edge": 1024 * 32 * 32})
    processor = Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=Qwen3VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    return folder
