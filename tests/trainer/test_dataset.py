"""The row streams: split across streams without overlap, seeded, resumable, mixed by weight."""

from __future__ import annotations

import shutil
from collections import Counter
from itertools import islice

import pyarrow.parquet as pq
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from curation.core.schema import MODE_KEYS
from curation.trainer import dataset
from curation.trainer.dataset import DataSourceError, MixedStream, index_modes, mode_weights
from curation.core.config import load_config

ALL_SIX = {m: 1.0 for m in MODE_KEYS}


def sample_ids(root, mode):
    return set(pq.read_table(root / "data" / mode, columns=["sample_id"]).column("sample_id").to_pylist())


def first_epoch(stream: MixedStream) -> list[tuple[str, int, str]]:
    """Draw until every mode of the stream has finished its epoch 0; return the epoch-0 keys."""
    keys = []
    for drawn in stream:
        keys.append(drawn.key)
        if all(epoch >= 1 for epoch, _ in drawn.state["cursor"].values()):
            return [k for k in keys if k[1] == 0]
    raise AssertionError("unreachable: streams are endless")


@pytest.mark.parametrize("num_streams", [1, 3, 4])
def test_streams_split_every_epoch_without_overlap(handmade_dataset, num_streams):
    shards = index_modes(str(handmade_dataset), ALL_SIX)
    seen = []
    for stream in range(num_streams):
        seen += first_epoch(MixedStream(shards, ALL_SIX, seed=3, stream=stream, num_streams=num_streams))
    assert len(seen) == len(set(seen))  # no row twice in an epoch
    for mode in MODE_KEYS:
        assert {sid for m, _, sid in seen if m == mode} == sample_ids(handmade_dataset, mode)


def test_order_is_seeded_and_resumes_from_a_state(handmade_dataset):
    shards = index_modes(str(handmade_dataset), ALL_SIX)
    whole = list(islice(MixedStream(shards, ALL_SIX, seed=5, stream=1, num_streams=2), 30))
    again = [d.key for d in islice(MixedStream(shards, ALL_SIX, seed=5, stream=1, num_streams=2), 30)]
    assert again == [d.key for d in whole]
    resumed = MixedStream(shards, ALL_SIX, seed=5, stream=1, num_streams=2, state=whole[11].state)
    assert [d.key for d in islice(resumed, 18)] == [d.key for d in whole[12:]]
    other_seed = [d.key for d in islice(MixedStream(shards, ALL_SIX, seed=6, stream=1, num_streams=2), 30)]
    assert other_seed != again


def test_epochs_reshuffle(handmade_dataset):
    shards = index_modes(str(handmade_dataset), {"initial_full_learning": 1.0})
    keys = [d.key for d in islice(MixedStream(shards, {"initial_full_learning": 1.0}, seed=0, stream=0,
                                              num_streams=1), 16)]
    first, second = [k[2] for k in keys[:8]], [k[2] for k in keys[8:]]
    assert set(first) == set(second) and first != second


def test_modes_are_drawn_in_proportion_to_their_weights(handmade_dataset):
    weights = {"initial_full_learning": 1.0, "initial_thinking_generation_learning": 0.5}
    shards = index_modes(str(handmade_dataset), weights)
    counts = Counter(d.mode for d in islice(MixedStream(shards, weights, seed=0, stream=0, num_streams=1), 900))
    assert counts["initial_full_learning"] / 900 == pytest.approx(2 / 3, abs=0.05)


def test_stage_presets_follow_irgl():
    cfg = load_config("train", ["data=unused", "train_model=tiny"])
    assert mode_weights(cfg.stages, 1, None) == {
        "initial_full_learning": 1.0, "improving_full_learning": 1.0,
        "initial_thinking_generation_learning": 0.5, "improving_thinking_generation_learning": 0.5,
        "initial_thinking_understanding_learning": 0.5, "improving_thinking_understanding_learning": 0.5}
    assert mode_weights(cfg.stages, 2, None) == {"initial_full_learning": 1.0, "improving_full_learning": 1.0}
    dropped = load_config("train", ["data=unused", "train_model=tiny",
                                    "stages.1.modes.initial_thinking_understanding_learning=0"])
    assert "initial_thinking_understanding_learning" not in mode_weights(dropped.stages, 1, None)
    assert mode_weights(cfg.stages, 1, {"improving_full_learning": 2}) == {"improving_full_learning": 2.0}
    with pytest.raises(DataSourceError, match="not_a_mode"):
        mode_weights(cfg.stages, 1, {"not_a_mode": 1.0})


def test_a_missing_mode_is_an_error(tmp_path, handmade_dataset):
    shutil.copytree(handmade_dataset / "data" / "initial_full_learning", tmp_path / "data" / "initial_full_learning")
    with pytest.raises(DataSourceError, match="improving_full_learning"):
        index_modes(str(tmp_path), {"initial_full_learning": 1.0, "improving_full_learning": 1.0})


def test_a_hub_id_is_read_through_the_hub_filesystem(tmp_path, handmade_dataset, monkeypatch):
    """The Hub path, exercised with a local folder laid out as HfFileSystem sees a dataset repo."""
    shutil.copytree(handmade_dataset / "data", tmp_path / "datasets" / "org" / "irgl" / "data")
    monkeypatch.setattr(dataset, "hub_filesystem", lambda: DirFileSystem(str(tmp_path), fs=LocalFileSystem()))
    weights = {"improving_full_learning": 1.0}
    from_hub = list(islice(MixedStream(index_modes("org/irgl", weights), weights, seed=0, stream=0, num_streams=1), 8))
    local = list(islice(MixedStream(index_modes(str(handmade_dataset), weights), weights, seed=0, stream=0,
                                    num_streams=1), 8))
    assert [d.key for d in from_hub] == [d.key for d in local]
    assert from_hub[0].row == local[0].row
