"""Offline world prompt source: GenEval-style compositional prompts, seeded; or a user's file.

Part of the offline world (see `curation/world/README.md`): a simulator, not real data. A
user's prompts file is read one prompt per line; prompts outside the world's grammar are kept
and rejected later with a reason by the stage that cannot handle them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import numpy as np

from curation.backends.base import BackendUnavailable, Source, SourceItem
from curation.world.scene import sample_scene, scene_to_prompt


class OfflinePrompts(Source):
    provides_images = False

    def __init__(self, seed: int = 0, prompts_file: str | None = None, concurrency: int = 1):
        self.seed = int(seed)
        self.prompts_file = Path(prompts_file) if prompts_file else None
        self.concurrency = concurrency

    def identity(self) -> dict:
        settings: dict = {"seed": self.seed}
        if self.prompts_file is not None:
            settings = {"prompts_sha256": hashlib.sha256(self.prompts_file.read_bytes()).hexdigest()}
        return {"id": "offline-world/prompts", "revision": "1", "settings": settings}

    def check(self) -> None:
        if self.prompts_file is not None and not self.prompts_file.is_file():
            raise BackendUnavailable(f"source.prompts_file={self.prompts_file} does not exist: give a text file "
                                     "with one prompt per line, or leave it unset for generated prompts")

    def iter_items(self, limit: int) -> Iterator[SourceItem]:
        if self.prompts_file is not None:
            with self.prompts_file.open(encoding="utf-8") as fh:
                for line_no, line in enumerate(fh, start=1):
                    if line_no > limit:
                        return
                    yield SourceItem(source_id=f"{self.prompts_file.name}:{line_no}", prompt=line.rstrip("\n"))
            return
        for index in range(limit):
            # One generator per index: item i does not depend on how many items came before.
            rng = np.random.default_rng([self.seed, index])
            yield SourceItem(source_id=f"offline:{self.seed}:{index:08d}", prompt=scene_to_prompt(sample_scene(rng)))
