"""One streaming pass: samples are worked on while the source is still being read, emit reads
each outcome once, progress in logs is one line, and paths that cannot be created are one sentence."""

from __future__ import annotations

import io
import sys
import threading

import pytest

from curation.backends.sources.offline import OfflinePrompts
from curation.pipeline.store import Store
from curation.core.progress import Progress
from curation.writer import manifest
from tests.helpers import build

HOLD_AFTER = 4  # rows the source yields before it waits for the first stored outcome


def test_the_first_samples_finish_while_the_source_is_still_being_read(tmp_path, monkeypatch):
    """A source that stops after a few rows until an outcome exists: a run that read the whole
    source before working would wait forever (the wait times out and the test fails)."""
    first_outcome = threading.Event()
    put_outcome = Store.put_outcome

    def noting_put_outcome(self, run_key, outcome):
        put_outcome(self, run_key, outcome)
        first_outcome.set()

    iter_items = OfflinePrompts.iter_items

    def held_iter_items(self, limit):
        for i, item in enumerate(iter_items(self, limit)):
            if i == HOLD_AFTER and not first_outcome.wait(timeout=30):
                raise AssertionError("no sample was finished before the source was read further")
            yield item

    monkeypatch.setattr(Store, "put_outcome", noting_put_outcome)
    monkeypatch.setattr(OfflinePrompts, "iter_items", held_iter_items)
    out = build(tmp_path, "recipe=improving_full", "n=12", "gates_workers=1")
    doc = manifest.read(out)
    entry = doc["modes"]["improving_full_learning"]
    assert entry["sourced"] == 12 == entry["accepted"] + entry["rejected"]
    assert doc["run"]["first_result_s"] < doc["run"]["elapsed_s"]


def test_emit_reads_each_outcome_once_for_all_six_modes(tmp_path, monkeypatch):
    reads = []
    iter_outcomes = Store.iter_outcomes

    def counting(self, run_key):
        for outcome in iter_outcomes(self, run_key):
            reads.append(outcome.sample_id)
            yield outcome

    monkeypatch.setattr(Store, "iter_outcomes", counting)
    out = build(tmp_path, "recipe=all", "n=6")
    doc = manifest.read(out)
    assert len(doc["modes"]) == 6
    assert len(reads) == len(set(reads)) == 6  # one read per sample, feeding every mode
    assert reads == sorted(reads)
    for entry in doc["modes"].values():
        assert entry["sourced"] == 6 == entry["accepted"] + entry["rejected"]


def test_progress_in_a_log_is_one_compact_line_per_interval():
    stream = io.StringIO()  # not a terminal
    progress = Progress(["gates", "initial_thinking"], interval=0, stream=stream)
    progress.set_total("gates", 10)
    progress.update("gates", computed=4, rejected=1)
    progress.update("initial_thinking", computed=2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # one per update (interval 0), never a block per stage
    assert "gates 4/10" in lines[-1] and "fail 1" in lines[-1] and "ETA" in lines[-1]
    assert "initial_thinking 2 " in lines[-1]  # no total known: count and rate only
    assert "\x1b[" not in stream.getvalue()


@pytest.mark.parametrize("knob", ["out", "cache"])
def test_a_path_that_cannot_be_created_is_one_sentence(tmp_path, knob, capsys, monkeypatch):
    from curation import run as run_module

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    paths = {"out": tmp_path / "ds", "cache": tmp_path / "cache", knob: blocker / "inside"}
    monkeypatch.setattr(sys, "argv", ["curation.run", "recipe=initial_thinking", "n=2", "image_size=64",
                                      f"out={paths['out']}", f"cache={paths['cache']}"])
    with pytest.raises(SystemExit) as exit_info:
        run_module.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {knob}=") and "cannot be created" in err[0]


def test_lineage_column_is_canonical_json_of_its_dict(tmp_path):
    """Emit assembles the lineage from parts serialised once per sample: it must be exactly the
    sorted-keys JSON of the lineage dict (what `json.dumps` would write), in every mode."""
    import json

    import pyarrow.parquet as pq

    out = build(tmp_path, "recipe=all", "n=4")
    seen = 0
    for path in sorted((out / "data").rglob("*.parquet")):
        for text in pq.read_table(path, columns=["lineage"])["lineage"].to_pylist():
            parsed = json.loads(text)
            assert text == json.dumps(parsed, sort_keys=True, ensure_ascii=False)
            assert parsed["mode"] == path.parent.name and set(parsed["stages"]) == set(
                manifest.read(out)["modes"][parsed["mode"]]["stages"])
            seen += 1
    assert seen > 0
