"""Offline world image generator: renders a prompt's scene, with seeded defects or without.

Configured twice: as the reference generator (`reference=offline`: defect rate 0, a detailed
rendering — the high-quality image), and as the base model (`generator=offline`: the same
scene with defects at a configurable rate — wrong count, wrong colour, swapped relation,
missing or extra object, lost detail). The defects it injected are returned as lineage only;
no stage can read them, so the offline teacher must find them in the pixels.
"""

from __future__ import annotations

import asyncio

import numpy as np

from curation.backends.base import BackendUnavailable, GeneratedImage, GenerateRequest, ImageGenerator
from curation.core.records import Reject
from curation.world.defects import DEFECT_KINDS, sample_defects
from curation.world.render import render_scene
from curation.world.analyse import analyse
from curation.world.scene import PromptOutsideGrammar, parse_prompt
from curation.world.thinking import write_initial_thinking


class OfflineRenderer(ImageGenerator):
    def __init__(self, model_id: str, width: int = 256, height: int = 256, defect_rate: float = 0.0,
                 defect_kinds: list[str] | tuple[str, ...] = DEFECT_KINDS, concurrency: int = 2,
                 think: bool = False):
        self.model_id = model_id
        self.width, self.height = int(width), int(height)
        self.defect_rate = float(defect_rate)
        self.defect_kinds = tuple(defect_kinds)
        self.concurrency = concurrency
        # Like BAGEL's think mode: a plan of what it drew, written before its image is returned.
        self.think = bool(think)

    def identity(self) -> dict:
        return {"id": self.model_id, "revision": "1",
                "settings": {"size": self.width, "defect_rate": self.defect_rate, "defect_kinds": list(self.defect_kinds),
                             **({"think": True} if self.think else {})}}

    def check(self) -> None:
        if self.width != self.height:
            raise BackendUnavailable(f"the offline renderer draws square images; got {self.width}x{self.height}: "
                                     "set width and height to the same value")
        if not 64 <= self.width <= 1024:
            raise BackendUnavailable(f"offline image size {self.width} is outside 64..1024")
        unknown = set(self.defect_kinds) - set(DEFECT_KINDS)
        if unknown:
            raise BackendUnavailable(f"unknown defect kinds {sorted(unknown)}; choose from {list(DEFECT_KINDS)}")
        if not 0.0 <= self.defect_rate <= 1.0:
            raise BackendUnavailable(f"defect_rate {self.defect_rate} must be within [0, 1]")

    async def generate(self, request: GenerateRequest) -> GeneratedImage | Reject:
        try:
            scene = parse_prompt(request.prompt)
        except PromptOutsideGrammar as exc:
            return Reject(self.role, "prompt_outside_grammar", f"the offline world cannot draw it: {exc.reason}")
        rng = np.random.default_rng(request.seed)
        defects = sample_defects(scene, rng, self.defect_rate, self.defect_kinds) if self.defect_rate > 0 else []
        image = await asyncio.to_thread(render_scene, scene, self.width, request.seed, defects)
        thinking = None
        if self.think:  # the plan its (possibly flawed) image follows, as a base model's own plan would be
            thinking = await asyncio.to_thread(write_initial_thinking, request.prompt, analyse(image), request.seed)
        lineage = {"injected_defects": [d.to_json() for d in defects]} if self.defect_rate > 0 else {}
        return GeneratedImage(image=image, lineage=lineage, thinking=thinking)
