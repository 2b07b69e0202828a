"""What `bagel_compat()` provides for BAGEL's checkout on transformers 5, tested without the checkout.

The checkout itself cannot be in CI; the load of BAGEL's own model classes through these pieces was
checked by hand (docs/sources_and_generators.md, "BAGEL in this process"). Here each piece is held to
what transformers 4.x did, and to what transformers 5 computes itself where it still can.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from typing import Any, Optional

import pytest
import torch
import transformers
from transformers.configuration_utils import PretrainedConfig
from transformers.models.qwen2.configuration_qwen2 import Qwen2Config
from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding
from transformers.utils import ModelOutput

from curation.backends.generators.bagel_inprocess import (_default_rope_parameters, _prepare_4d_attention_mask,
                                                          fill_4x_config_defaults, fix_navit_output)


class LegacyQwen2Config(PretrainedConfig):
    """Shaped like BAGEL's own Qwen2Config: rope_theta and sizes as plain attributes."""

    def __init__(self, hidden_size=64, num_attention_heads=4, rope_theta=1e6, **kwargs):
        self.hidden_size, self.num_attention_heads, self.rope_theta = hidden_size, num_attention_heads, rope_theta
        super().__init__(**kwargs)


@pytest.mark.parametrize("hidden, heads, theta", [(64, 4, 1e6), (3584, 28, 1e6), (128, 2, 10000.0)])
def test_default_rope_matches_transformers_own_qwen2_rope(hidden, heads, theta):
    inv_freq, factor = _default_rope_parameters(LegacyQwen2Config(hidden, heads, theta))
    reference = Qwen2RotaryEmbedding(Qwen2Config(hidden_size=hidden, num_attention_heads=heads,
                                                 rope_theta=theta)).inv_freq
    assert factor == 1.0 and torch.equal(inv_freq, reference)
    # BAGEL's rotary embedding without a config passes base and dim instead.
    legacy, _ = _default_rope_parameters(None, None, base=theta, dim=hidden // heads)
    assert torch.equal(legacy, reference)
    with pytest.raises(ValueError):
        _default_rope_parameters(LegacyQwen2Config(), None, base=theta, dim=8)


def test_the_4d_mask_is_additive_and_blocks_padding():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    out = _prepare_4d_attention_mask(mask, torch.float32, tgt_len=2)
    assert out.shape == (2, 1, 2, 3)
    assert torch.all(out[0, 0, :, :2] == 0) and torch.all(out[0, 0, :, 2] == torch.finfo(torch.float32).min)
    assert torch.all(out[1] == 0)


def test_compat_adds_only_what_is_missing_and_bagels_imports_then_resolve():
    """In a fresh interpreter (it changes transformers' registries): BAGEL's two imports work after it."""
    code = textwrap.dedent("""
        import importlib, transformers
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
        before = set(ROPE_INIT_FUNCTIONS)
        from curation.backends.generators.bagel_inprocess import bagel_compat
        first, second = bagel_compat(), bagel_compat()
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS as after
        from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask
        assert set(after) - before <= {"default"} and all(after[k] is ROPE_INIT_FUNCTIONS[k] for k in before)
        assert second == [], second  # nothing twice
        print(transformers.__version__.split(".")[0], sorted(first))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    major, provided = done.stdout.split(" ", 1)
    if major == "5":  # the pinned stack: both are gone from transformers 5
        assert "ROPE_INIT_FUNCTIONS['default']" in provided and "modeling_attn_mask_utils" in provided


def test_the_navit_output_is_made_constructible_with_its_own_keyword():
    @dataclasses.dataclass
    class BaseNavitOutputWithPast(ModelOutput):  # as BAGEL's qwen2_navit.py declares it
        packed_query_sequence: torch.FloatTensor = None
        past_key_values: Optional[Any] = None

    navit = type(sys)("qwen2_navit")
    navit.BaseNavitOutputWithPast = BaseNavitOutputWithPast
    replaced = fix_navit_output(navit)
    out = navit.BaseNavitOutputWithPast(packed_query_sequence=1, past_key_values=2)
    assert (out.packed_query_sequence, out.past_key_values) == (1, 2)
    assert fix_navit_output(navit) is False  # once fixed (or on transformers 4.x), left alone
    assert replaced == (navit.BaseNavitOutputWithPast is not BaseNavitOutputWithPast)
    if transformers.__version__.startswith("5."):  # the pinned stack renames the keyword: it had to be replaced
        assert replaced


def test_configs_get_the_4x_token_defaults_they_read():
    config = LegacyQwen2Config()
    filled = fill_4x_config_defaults(config)
    assert config.pad_token_id is None and config.bos_token_id is None and config.eos_token_id is None
    assert fill_4x_config_defaults(config) == [] and set(filled) <= {"pad_token_id", "bos_token_id", "eos_token_id"}
    kept = LegacyQwen2Config(pad_token_id=7)
    fill_4x_config_defaults(kept)
    assert kept.pad_token_id == 7
