"""Text → ids, and the four special tokens that frame every segment.

IRGL.md: text segments are `<|im_start|> … <|im_end|>`, images `<|vision_start|> … <|vision_end|>`.
The field names of `SpecialTokens` are BAGEL's (the `new_token_ids` its trainer builds), so the
BAGEL adapter can hand them over unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")


@dataclass(frozen=True)
class SpecialTokens:
    bos_token_id: int  # <|im_start|>
    eos_token_id: int  # <|im_end|>
    start_of_image: int  # <|vision_start|>
    end_of_image: int  # <|vision_end|>


class Tokenizer(Protocol):
    vocab_size: int
    special: SpecialTokens

    def encode(self, text: str) -> list[int]: ...


class ByteTokenizer:
    """UTF-8 bytes are ids 0–255 and the special tokens follow: no files, so the tiny model trains anywhere."""

    vocab_size = 256 + len(SPECIAL_TOKENS)
    special = SpecialTokens(bos_token_id=256, eos_token_id=257, start_of_image=258, end_of_image=259)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


class HFTokenizer:
    """A Hugging Face tokenizer from a local folder (BAGEL's Qwen2 one), special tokens added as BAGEL adds them."""

    def __init__(self, path: str):
        from transformers import AutoTokenizer

        # local_files_only: a trainer must not fetch weights or vocabularies behind the user's back.
        self._tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._tok.add_tokens([t for t in SPECIAL_TOKENS if t not in self._tok.all_special_tokens])
        ids = [self._tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
        self.special = SpecialTokens(*ids)
        self.vocab_size = len(self._tok)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text)


def load_tokenizer(kind: str, path: str | None = None) -> Tokenizer:
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "hf":
        if not path:
            raise ValueError("tokenizer kind `hf` needs `path`: a local folder with the tokenizer files")
        return HFTokenizer(path)
    raise ValueError(f"unknown tokenizer kind {kind!r}: use `bytes` or `hf`")
