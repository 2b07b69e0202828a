"""The offline world's scorer: measures the world's renderings with the world's own analyser.

A simulator, like the rest of `curation/world/` (see its README), so that quality checks run
with no weights. What it measures, and what it stands in for:

- alignment: the world checker's `score` (fraction of count, colour, size, relation and
  "nothing unrequested" checks the image passes for its prompt's scene), 0–1 — for CLIP/SigLIP;
- aesthetic: surface detail, the median fine-scale luminance energy inside objects in percent of
  brightness (`Observation.detail`): sharp, shaded renders measure ~3.5–7.5, the base model's
  blurred, flat-shaded ones (the lost_detail defect) ~0–3 — for an aesthetic head;
- preference (simulated): `PREFERENCE_ALIGNMENT_WEIGHT` × alignment + aesthetic — for a reward
  model such as PickScore, which weighs what an image shows for its prompt and how it looks; one
  content error (−0.1 to −0.3 alignment) costs 1–3 points, a blurred render 3–6: a clean render
  measures ~13.5–17.5, on a scale of its own (PickScore's runs ~18–24; only differences between
  two images for one prompt are read, by the `improvement` stage and the dedup rank);
- embedding: the image shrunk to 8×8 pixels, mean removed, unit norm (192 numbers) — for a CLIP
  image embedding, enough to find re-renders of one scene;
- no safety score: the world draws shapes on backdrops; it measures nothing it cannot judge.

It understands only the world's grammar: a prompt outside it is a reject (`prompt_outside_grammar`).
"""

from __future__ import annotations

import asyncio

import numpy as np

from curation.backends.base import ImageInput, ImageScores, Scorer
from curation.core.records import Reject
from curation.world.analyse import analyse
from curation.world.checker import check_observation
from curation.world.scene import PromptOutsideGrammar, parse_prompt

THUMBNAIL_SIDE = 8
MODEL = {"id": "offline-world/analyser", "revision": "1"}
PREFERENCE_ALIGNMENT_WEIGHT = 10.0  # a full content error outweighs the detail of a sharp render


def thumbnail_embedding(image) -> tuple[float, ...]:
    small = np.asarray(image.convert("RGB").resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE)), dtype=np.float64).ravel()
    small -= small.mean()
    norm = np.linalg.norm(small)
    if norm == 0:  # a flat image: any unit vector is as good; a fixed one keeps flat images together
        small = np.ones_like(small)
        norm = np.linalg.norm(small)
    return tuple((small / norm).tolist())


class OfflineScorer(Scorer):
    def __init__(self, concurrency: int = 2):
        self.concurrency = int(concurrency)

    def identity(self) -> dict:
        return {**MODEL, "settings": {"thumbnail_side": THUMBNAIL_SIDE}}

    async def score(self, prompt: str, image: ImageInput) -> ImageScores | Reject:
        try:
            scene = parse_prompt(prompt)
        except PromptOutsideGrammar as exc:
            return Reject("scorer", "prompt_outside_grammar", exc.reason)

        def measure() -> ImageScores:
            pixels = image.pil()
            observation = analyse(pixels)
            alignment = float(check_observation(observation, scene).score)
            aesthetic = float(observation.detail)
            return ImageScores(alignment=alignment, aesthetic=aesthetic,
                               preference=PREFERENCE_ALIGNMENT_WEIGHT * alignment + aesthetic,
                               embedding=thumbnail_embedding(pixels),
                               models={"alignment": MODEL, "aesthetic": MODEL, "preference": MODEL})

        return await asyncio.to_thread(measure)
