"""Packing, the packed tensors, and the resumable DataLoader."""

from __future__ import annotations

import logging
from dataclasses import replace
from itertools import islice

import pyarrow.parquet as pq
import torch

from curation.core import schema
from curation.core.schema import MODE_KEYS
from curation.trainer.loader import ResumableLoader, TrainStream
from curation.trainer.pack import Planned, collate, kept_items, pack
from curation.trainer.plan import ImageGrid, Planner
from curation.trainer.tokenizer import ByteTokenizer

PLANNER = Planner(ByteTokenizer(), ImageGrid(32, 64, 16), ImageGrid(28, 56, 14))
NO_DROPOUT = {"text": 0.0, "vae": 0.0, "vit": 0.0}


def loader(data, *, num_workers=0, max_sample=2048, max_batch=2048, weights=None, dropout=NO_DROPOUT):
    stream = TrainStream(str(data), weights or {m: 1.0 for m in MODE_KEYS}, PLANNER, seed=1, rank=0, world_size=1,
                         num_workers=num_workers, max_tokens_per_sample=max_sample, max_tokens_per_batch=max_batch,
                         cfg_dropout=dropout, vae_patch=16, vit_patch=14)
    return ResumableLoader(stream, num_workers)


def planned_row(data, mode: str) -> Planned:
    row = pq.read_table(data / "data" / mode).slice(0, 1).to_pylist()[0]
    return Planned(PLANNER.plan(schema.load(mode), row), (mode, 0, row["sample_id"]), {})


def test_batches_stay_within_the_token_budget(handmade_dataset):
    for batch in islice(loader(handmade_dataset, max_sample=600, max_batch=1000), 12):
        assert batch.num_tokens <= 1000
        assert len(batch.keys) >= 1


def test_packing_is_greedy_and_in_order():
    sizes = [5, 4, 3, 6, 2]
    items = [Planned(_Plan(n), ("m", 0, str(i)), {"after": i}) for i, n in enumerate(sizes)]
    groups = list(pack(items, max_tokens=9))
    assert [[p.key[2] for p in g] for g in groups] == [["0", "1"], ["2", "3"], ["4"]]
    assert [g[-1].state for g in groups] == [{"after": 1}, {"after": 3}, {"after": 4}]


class _Plan:
    def __init__(self, n):
        self.num_tokens = n


def test_over_budget_rows_are_counted_skipped_and_logged(handmade_dataset, caplog):
    budget = 200  # below every improving row of the hand-made data, above the short modes
    ld = loader(handmade_dataset, max_sample=budget, max_batch=1000)
    with caplog.at_level(logging.WARNING, logger="curation.train"):
        batches = list(islice(ld, 6))
    assert ld.skipped > 0
    assert sum("max_tokens_per_sample" in r.message for r in caplog.records) >= ld.skipped
    kept_modes = {key[0] for b in batches for key in b.keys}
    assert kept_modes and not kept_modes & {"improving_full_learning", "improving_thinking_generation_learning"}


def test_resumed_loader_continues_with_the_same_batches(handmade_dataset):
    """Two workers: the checkpoint falls after an odd number of batches, so workers must rotate."""
    def make():
        return loader(handmade_dataset, num_workers=2, max_sample=700, max_batch=700)

    whole = [b.keys for b in islice(make(), 9)]
    first = make()
    assert [b.keys for b in islice(first, 5)] == whole[:5]
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    assert [b.keys for b in islice(resumed, 4)] == whole[5:]


def test_labels_cover_only_loss_text(handmade_dataset):
    planned = planned_row(handmade_dataset, "improving_full_learning")
    special = ByteTokenizer.special
    batch = collate([planned], special=special, vae_patch=16, vit_patch=14, cells_per_side=4, dropout=NO_DROPOUT,
                    seed=0, stream=0)
    thinking = next(i for i in planned.plan.items if i.column == "improving_thinking")
    assert batch.labels.tolist() == [*thinking.ids, special.eos_token_id]
    assert batch.num_tokens == planned.plan.num_tokens
    assert int(batch.vae_noised.sum()) == 12  # the improved image's 4×3 cells, the clean initial copy not
    assert len(batch.vae_index) == 24 and len(batch.vit_index) == 12


def test_attention_hides_the_noised_target_and_is_causal_within_text(handmade_dataset):
    a = planned_row(handmade_dataset, "initial_full_learning")
    # No IRGL mode puts anything after its target image; append the prompt again to see that
    # an item after the target cannot attend to the noised patches.
    a = replace(a, plan=replace(a.plan, items=(*a.plan.items, a.plan.items[0])))
    b = planned_row(handmade_dataset, "initial_thinking_generation_learning")
    batch = collate([a, b], special=ByteTokenizer.special, vae_patch=16, vit_patch=14, cells_per_side=4,
                    dropout=NO_DROPOUT, seed=0, stream=0)
    mask = batch.attention
    noised = batch.vae_index[batch.vae_noised]
    first_len = a.plan.num_tokens
    assert not mask[first_len:, :first_len].any() and not mask[:first_len, first_len:].any()  # samples apart
    appended = torch.arange(first_len - a.plan.items[-1].tokens, first_len)
    assert not mask[appended][:, noised].any()
    assert mask[appended][:, :int(noised.min()) - 1].all()  # it still sees prompt and thinking
    assert mask[noised][:, noised].all()  # an image attends to itself fully
    assert not mask[0, 1] and mask[1, 0]  # text is causal


def test_cfg_dropout_drops_only_droppable_items(handmade_dataset):
    everything = {"text": 1.0, "vae": 1.0, "vit": 1.0}
    for mode in MODE_KEYS:
        planned = planned_row(handmade_dataset, mode)
        kept = kept_items(planned, everything, seed=0)
        assert kept == [i for i in planned.plan.items if not i.droppable]
        assert kept and all(i.loss for i in kept)
