"""The shared store: the SQLite store's contract over fsspec, and many writers at once."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from curation.pipeline.shared_store import SharedStore, open_store
from curation.pipeline.store import Store
from curation.core.config import ConfigError
from curation.core.images import ImageRef
from curation.core.records import Outcome, Reject, StageOutput
from curation.writer import manifest
from curation.run import main
from tests.helpers import FAST, build, shard_digests
from tests.store import writer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "path", "file-url", "memory-url"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = Store(tmp_path / "c")
    elif request.param == "path":
        s = SharedStore(tmp_path / "c")
    elif request.param == "file-url":
        s = SharedStore(f"file://{tmp_path / 'c'}")
    else:
        s = SharedStore(f"memory://store-{uuid.uuid4().hex}")
    yield s
    s.close()


def test_results_round_trip_and_overwrite(store):
    ref = ImageRef(sha256="ab" * 32, format="png", width=2, height=3, nbytes=10)
    assert store.get_result("k1") is None
    out = StageOutput(fields={"thinking": "é ok", "image": ref, "none": None}, lineage={"model": "m"})
    store.put_result("k1", "initial_thinking", out)
    assert store.get_result("k1") == out
    rej = Reject("initial_image", "generation_failed", "HTTP 503", transient=True)
    store.put_result("k1", "initial_thinking", rej)  # a retried transient reject is replaced
    assert store.get_result("k1") == rej


def test_outcomes_come_back_sorted_by_sample_id(store):
    ids = ["f0000000000000aa", "0a00000000000000", "0b00000000000001", "ff00000000000000", "0a00000000000001"]
    ref = ImageRef(sha256="ab" * 32, format="png", width=2, height=3, nbytes=10)
    for i, sid in enumerate(ids):
        store.put_outcome("run", Outcome(sid, f"src:{i}", i, fields={"prompt": "p", "image": ref},
                                         rejects={"score": Reject("score", "checker_error")} if i == 2 else {}))
    store.put_outcome("other-run", Outcome("00", "src", 0))
    back = list(store.iter_outcomes("run"))
    assert [o.sample_id for o in back] == sorted(ids)
    assert back[1] == Outcome("0a00000000000001", "src:4", 4, fields={"prompt": "p", "image": ref})
    assert back[2].rejects == {"score": Reject("score", "checker_error")}
    assert store.count_outcomes("run") == 5
    store.put_outcome("run", Outcome(ids[0], "src:0", 0))  # written again: still one
    assert store.count_outcomes("run") == 5
    store.clear_outcomes("run")
    assert store.count_outcomes("run") == 0 and list(store.iter_outcomes("run")) == []
    assert store.count_outcomes("other-run") == 1
    assert list(store.iter_outcomes("no-such-run")) == []


def test_images_by_content_hash(store):
    data, ref = writer.image_for("x")
    assert not store.has_image(ref)
    assert store.put_image_bytes(data, ref) == ref
    assert store.has_image(ref) and store.image_bytes(ref) == data
    store.put_image_bytes(data, ref)  # idempotent
    assert store.image_bytes(ref) == data


def test_missing_image_names_itself(tmp_path):
    ref = ImageRef(sha256="cd" * 32, format="png", width=1, height=1, nbytes=1)
    with pytest.raises(FileNotFoundError, match="cdcd"):
        SharedStore(tmp_path).image_bytes(ref)


def test_open_store_selects_by_config(tmp_path):
    assert isinstance(open_store(tmp_path / "a"), Store)
    assert isinstance(open_store(tmp_path / "b", "shared"), SharedStore)
    assert isinstance(open_store(f"file://{tmp_path / 'c'}"), SharedStore)  # a URL is always shared
    with pytest.raises(ConfigError, match="store='redis'"):
        open_store(tmp_path / "d", "redis")


def test_no_temporary_names_are_left_or_listed(tmp_path):
    s = SharedStore(tmp_path)
    s.put_outcome("p", Outcome("aa00", "src", 0))
    (tmp_path / "outcomes" / "p" / "aa" / ".tmp-killed-writer").write_bytes(b"{half")  # a writer killed mid-write
    assert [o.sample_id for o in s.iter_outcomes("p")] == ["aa00"] and s.count_outcomes("p") == 1
    assert not [p for p in tmp_path.rglob(".tmp-*") if p.name != ".tmp-killed-writer"]


@pytest.mark.parametrize("url_kind", ["path", "file-url"])
def test_two_processes_writing_the_same_keys(tmp_path, url_kind):
    """Two writers walk the same 40 keys from opposite ends while this process reads.

    No reader ever sees a partial value; every key ends complete; a key computed by both
    writers was computed by both inside its race window (the second started before the first
    had written), so there is no double work beyond it.
    """
    url = str(tmp_path / "c") if url_kind == "path" else f"file://{tmp_path / 'c'}"
    logs = [tmp_path / "fwd.json", tmp_path / "bwd.json"]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.store.writer", url, order, str(log)], cwd=REPO)
             for order, log in zip(("forward", "backward"), logs)]
    reader = SharedStore(url)
    expected = {k: writer.result_for(k, writer.image_for(k)[1]) for k in writer.KEYS}
    reads = 0
    while any(p.poll() is None for p in procs):
        for key in writer.KEYS:
            got = reader.get_result(key)  # a torn JSON file would raise here
            if got is not None:
                reads += 1
                assert got == expected[key]
                ref = got.fields["image"]
                assert reader.image_bytes(ref) == writer.image_for(key)[0]  # image written before the result
    assert [p.wait() for p in procs] == [0, 0]
    assert reads > 0, "the reader never overlapped the writers"

    for key in writer.KEYS:
        assert reader.get_result(key) == expected[key]
    fwd, bwd = (json.loads(log.read_text()) for log in logs)
    done = {}
    for entry in fwd + bwd:
        done.setdefault(entry["key"], []).append(entry)
    assert set(done) == set(writer.KEYS)
    twice = {k: v for k, v in done.items() if len(v) == 2}
    for key, (a, b) in twice.items():
        first, second = sorted((a, b), key=lambda e: e["start"])
        assert second["start"] < first["end"], f"{key} computed again after it was in the store"
    assert len(twice) <= 4, f"{len(twice)} of 40 keys computed twice: the writers should meet in the middle"
    assert not list((tmp_path / "c").rglob(".tmp-*"))


def test_the_local_executor_on_the_shared_store_writes_the_same_bytes(tmp_path):
    """`executor.store=shared` (a Slurm array on NFS) and a `file://` URL give SQLite's bytes."""
    sqlite = build(tmp_path, "recipe=all", "n=6", out="a", cache="ca")
    shared = build(tmp_path, "recipe=all", "n=6", "executor.store=shared", out="b", cache="cb")
    assert (tmp_path / "cb" / "outcomes").is_dir() and not (tmp_path / "cb" / "store.sqlite").exists()
    url = main([*FAST, "recipe=all", "n=6", f"out={tmp_path / 'c'}", f"cache=file://{tmp_path / 'cc'}"])
    assert shard_digests(sqlite) == shard_digests(shared) == shard_digests(url)
    again = build(tmp_path, "recipe=all", "n=6", "executor.store=shared", out="b", cache="cb")
    assert manifest.read(again)["run"]["backend_calls"] == {}  # resumed from the shared store: nothing to call
