"""Train on IRGL shards, and hand them to BAGEL.

The data flows one way, one file per step:

    dataset.py   rows of the mode shards (local dir or Hub id), mixed by weight, split across
                 ranks and workers, in a seeded, resumable order
    plan.py      one row → its mode's sequence plan (segments, flags, token counts), read from
                 `schemas/<mode>.yaml`
    pack.py      plans → packed batches under a token budget (the tiny model's tensors)
    loader.py    the above inside a torch DataLoader, with a state that checkpoints can save
    tiny_model.py, loop.py   the embedded small model and the plain training loop
    bagel_adapter.py         the same plans as the dicts BAGEL's packed dataset consumes
    official_format.py       a reader of the official IRG SFT layout (what `curation.export` writes)
"""
