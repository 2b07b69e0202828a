"""Tokenizers: bytes for the tiny model, or a local Hugging Face tokenizer with the frame tokens added."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from curation.trainer.tokenizer import SPECIAL_TOKENS, ByteTokenizer, load_tokenizer


def test_byte_tokenizer_keeps_specials_out_of_the_byte_range():
    tok = ByteTokenizer()
    assert tok.encode("<think>é</think>") == list("<think>é</think>".encode("utf-8"))
    ids = [tok.special.bos_token_id, tok.special.eos_token_id, tok.special.start_of_image, tok.special.end_of_image]
    assert sorted(ids) == list(range(256, tok.vocab_size))


def test_a_local_hf_tokenizer_gets_the_four_frame_tokens(tmp_path):
    words = {"[UNK]": 0, "a": 1, "red": 2, "circle": 3}
    core = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]").save_pretrained(tmp_path)

    tok = load_tokenizer("hf", str(tmp_path))
    assert tok.encode("a red circle") == [1, 2, 3]
    assert tok.vocab_size == len(words) + len(SPECIAL_TOKENS)
    assert sorted([tok.special.bos_token_id, tok.special.eos_token_id, tok.special.start_of_image,
                   tok.special.end_of_image]) == [4, 5, 6, 7]


def test_an_hf_tokenizer_needs_a_path():
    with pytest.raises(ValueError, match="path"):
        load_tokenizer("hf")
