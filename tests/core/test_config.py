"""Configuration: overrides, aliases, clear errors, and secrets that never reach the manifest."""

from __future__ import annotations

import json

import pytest

from curation.backends.base import BackendUnavailable
from curation.core.config import REDACTED, load_config, redact
from curation.pipeline.plan import PlanError, build_plan
from curation.run import main
from curation.core.schema import MODE_KEYS, SchemaError, resolve_mode


def test_short_and_official_recipe_names_compose_the_same_modes():
    short = load_config("config", ["recipe=improving_full", "n=7"])
    full = load_config("config", ["recipe=improving_full_learning", "n=7"])
    assert dict(short.recipe.modes) == dict(full.recipe.modes) == {"improving_full_learning": 7}


def test_all_recipe_has_all_six_modes():
    cfg = load_config("config", ["recipe=all"])
    assert list(cfg.recipe.modes) == list(MODE_KEYS)


def test_redact_hides_secret_values_but_keeps_env_var_names():
    cfg = {"teacher": {"api_key": "sk-" + "x" * 24, "api_key_env": "OPENAI_API_KEY",
                       "headers": {"Authorization": "Bearer x"}}, "hf_token": "hf_secret"}
    out = redact(cfg)
    assert out["teacher"]["api_key"] == REDACTED
    assert out["teacher"]["api_key_env"] == "OPENAI_API_KEY"
    assert out["teacher"]["headers"]["Authorization"] == REDACTED
    assert out["hf_token"] == REDACTED


def test_redact_keeps_knobs_that_only_mention_tokens():
    cfg = {"teacher": {"sampling": {"max_tokens": 2048}, "api_key_env": "X", "tokenizer": "bpe"}}
    assert redact(cfg) == cfg


def test_command_line_misconfiguration_is_one_sentence(tmp_path, capsys, monkeypatch):
    import sys

    from curation import run as run_module

    monkeypatch.setattr(sys, "argv", ["curation.run", "recipe=improving_full", "image_size=32",
                                      f"out={tmp_path / 'ds'}", f"cache={tmp_path / 'cache'}"])
    with pytest.raises(SystemExit) as exit_info:
        run_module.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "64..1024" in err[0]


def test_secret_in_config_never_reaches_manifest_card_or_shards(tmp_path):
    secret = "sk-" + "NOTAREALKEY" * 3  # a fake, built so secret scanners do not flag the file
    out = main(["recipe=initial_thinking", "n=2", "image_size=64", f"out={tmp_path / 'ds'}",
                f"cache={tmp_path / 'cache'}", f"+extra.api_token={secret}"])
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert json.loads((out / "manifest.json").read_text())["config"]["extra"]["api_token"] == REDACTED


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(SchemaError, match="unknown mode"):
        resolve_mode("improving_everything")
    with pytest.raises(PlanError, match="positive count"):
        build_plan({"improving_full": 0}, source_provides_images=False)


def test_broken_backend_fails_before_any_work(tmp_path):
    with pytest.raises(BackendUnavailable, match="64..1024"):
        main(["recipe=improving_full", "n=2", "image_size=32", f"out={tmp_path / 'ds'}",
              f"cache={tmp_path / 'cache'}"])
    assert not (tmp_path / "ds").exists()
