"""Offline world checker: GenEval-style scoring of an image against its prompt's scene."""

from __future__ import annotations

import asyncio

from PIL import Image

from curation.backends.base import Checker
from curation.core.records import Reject
from curation.world.checker import check
from curation.world.scene import PromptOutsideGrammar, parse_prompt


class OfflineChecker(Checker):
    def __init__(self, concurrency: int = 2):
        self.concurrency = concurrency

    def identity(self) -> dict:
        return {"id": "offline-world/checker", "revision": "1", "settings": {}}

    async def score(self, prompt: str, image: Image.Image) -> dict | Reject:
        try:
            scene = parse_prompt(prompt)
        except PromptOutsideGrammar as exc:
            return Reject("score", "prompt_outside_grammar", exc.reason)
        result = await asyncio.to_thread(check, image, scene)
        return {"accuracy": float(result.accuracy), "score": float(result.score)}
