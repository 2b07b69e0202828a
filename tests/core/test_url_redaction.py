"""Credentials inside URLs never reach what a run writes: `redact` cleans every string value."""

from __future__ import annotations

import json

import pytest

from curation.core.config import REDACTED, redact, redact_text
from curation.run import main

PASSWORD = "pw-" + "NOTREAL" * 2  # fakes, built at run time so secret scanners leave the file alone
TOKEN = "tk-" + "NOTREAL" * 2


@pytest.mark.parametrize("url, expected", [
    (f"https://alice:{PASSWORD}@host:8000/v1", f"https://{REDACTED}@host:8000/v1"),
    (f"https://{TOKEN}@github.com/org/repo", f"https://{REDACTED}@github.com/org/repo"),  # a token as user name
    (f"http://host/v1?token={TOKEN}&n=2", f"http://host/v1?token={REDACTED}&n=2"),
    (f"http://host/x?api_key={TOKEN}#frag", f"http://host/x?api_key={REDACTED}#frag"),
    (f"https://a.blob.core.windows.net/c/i.png?sv=2022&sig={TOKEN}&se=9",
     f"https://a.blob.core.windows.net/c/i.png?sv=2022&sig={REDACTED}&se=9"),
    (f"https://b.s3.amazonaws.com/k?X-Amz-Credential={TOKEN}&X-Amz-Signature={TOKEN}&X-Amz-Date=1",
     f"https://b.s3.amazonaws.com/k?X-Amz-Credential={REDACTED}&X-Amz-Signature={REDACTED}&X-Amz-Date=1"),
    (f"zip://a.png::https://u:{PASSWORD}@host/d.zip?token={TOKEN}",
     f"zip://a.png::https://{REDACTED}@host/d.zip?token={REDACTED}"),  # an fsspec chain: each part
    (f"app#access_token={TOKEN}", f"app#access_token={TOKEN}"),  # not a URL: left alone
    ("http://host/v1?monkey=1&keyword=x&max_tokens=5", "http://host/v1?monkey=1&keyword=x&max_tokens=5"),
    ("no url at all", "no url at all"),
])
def test_redact_text_removes_url_credentials_and_keeps_the_rest(url, expected):
    assert redact_text(url) == expected
    assert redact_text(f"error: cannot reach {url} now") == f"error: cannot reach {expected} now"


def test_redact_cleans_urls_in_every_string_value():
    cfg = {"teacher": {"base_url": f"https://alice:{PASSWORD}@gpu:8000/v1", "api_key_env": "KEY"},
           "source": {"path": f"hf://datasets/org/x?token={TOKEN}", "columns": [f"http://h/?sig={TOKEN}", "plain"]},
           "n": 5}
    out = redact(cfg)
    assert PASSWORD not in json.dumps(out) and TOKEN not in json.dumps(out)
    assert out["teacher"] == {"base_url": f"https://{REDACTED}@gpu:8000/v1", "api_key_env": "KEY"}
    assert out["source"]["columns"][1] == "plain" and out["n"] == 5


def test_url_credentials_in_config_never_reach_anything_a_run_writes(tmp_path):
    mirror = f"https://alice:{PASSWORD}@mirror.example/data?token={TOKEN}&v=2"
    out = main(["recipe=initial_thinking", "n=2", "image_size=64", f"out={tmp_path / 'ds'}",
                f"cache={tmp_path / 'cache'}", f"+extra.mirror='{mirror}'"])
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert PASSWORD.encode() not in data and TOKEN.encode() not in data, path
    written = json.loads((out / "manifest.json").read_text())["config"]["extra"]["mirror"]
    assert written == f"https://{REDACTED}@mirror.example/data?token={REDACTED}&v=2"
