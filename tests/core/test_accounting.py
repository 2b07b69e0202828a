"""Nothing is dropped silently: sourced = accepted + rejected, every reject has its reason."""

from __future__ import annotations

import pyarrow.parquet as pq

from curation.writer import manifest
from tests.helpers import build


def test_user_prompts_outside_grammar_are_rejected_with_reasons(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of two small red balls, in a grey studio\n"
                       "\n"
                       "a watercolor of a lighthouse at dusk\n"
                       "a photo of a large blue cube to the left of a small yellow star, against a white wall\n"
                       + "x" * 3000 + "\n")
    out = build(tmp_path, "recipe=all", "n=5", f"source.prompts_file={prompts}")
    doc = manifest.read(out)
    rejects = pq.read_table(out / "rejects" / "rejects.parquet").to_pylist()
    for mode, m in doc["modes"].items():
        assert m["sourced"] == 5
        assert m["accepted"] + m["rejected"] == m["sourced"]
        mine = [r for r in rejects if r["mode"] == mode]
        assert len(mine) == m["rejected"]
        reasons = {r["reason"] for r in mine}
        assert {"prompt_empty", "prompt_too_long", "prompt_outside_grammar"} <= reasons
        assert all(r["stage"] and r["reason"] for r in mine)
    assert doc["modes"]["improving_full_learning"]["accepted"] == 2
    # The base model is not called for a sample every mode has already rejected.
    assert doc["run"]["backend_calls"]["initial_image"] == 2


def test_counts_per_mode_can_differ(tmp_path):
    out = build(tmp_path, "recipe=all", "n=6", "recipe.modes.initial_thinking_generation_learning=3")
    doc = manifest.read(out)
    assert doc["modes"]["initial_thinking_generation_learning"]["sourced"] == 3
    assert doc["modes"]["improving_full_learning"]["sourced"] == 6
