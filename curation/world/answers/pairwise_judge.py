"""The judge: which of two images answers the prompt better, from what the analyser measures of each.

Both images are segmented and checked against the prompt's scene (the world checker): the image
that passes more of the prompt's checks wins. When both pass as many, the one with clearly more
surface detail wins (lost detail flattens the objects and blurs the backdrop's grain). Otherwise
the simulated judge cannot tell them apart and, like a real VLM judge, leans to the image shown
first, with low confidence: asked in both orders, its two verdicts then disagree. Nothing here
reads which image is which: the verdicts follow from the pixels alone.
"""

from __future__ import annotations

import json

from curation.world.analyse import Observation, analyse
from curation.world.answers import Answer, answers
from curation.world.checker import check_observation
from curation.world.scene import PromptOutsideGrammar, parse_prompt

# One image's surface detail below this share of the other's is a visible loss of detail (a
# flat-shaded, blurred render keeps under a third of a clean one's; two clean renders agree within 3%).
CLEARLY_LESS_DETAIL = 0.75


def _detail(observation: Observation) -> float:
    return observation.detail + observation.background_detail


@answers("judge_pairwise")
def judge(values, images, seed) -> Answer:
    first, second = analyse(images["first"]), analyse(images["second"])
    try:
        scene = parse_prompt(values["prompt"])
    except PromptOutsideGrammar:
        scene = None  # no request to check against: only the images' quality can decide
    scores = (None, None) if scene is None else tuple(check_observation(o, scene).score for o in (first, second))
    details = (_detail(first), _detail(second))
    if scene is not None and scores[0] != scores[1]:
        winner = 0 if scores[0] > scores[1] else 1
        gap = abs(scores[0] - scores[1])
        reason = (f"image {winner + 1} meets more of the prompt's requirements (objects, counts, colours, sizes, "
                  f"positions): {scores[winner]:.0%} against {scores[1 - winner]:.0%}")
        confidence = round(min(0.95, 0.6 + gap), 2)
    elif min(details) < CLEARLY_LESS_DETAIL * max(details):
        winner = 0 if details[0] > details[1] else 1
        reason = f"both images show what the prompt asks for; image {winner + 1} has sharper, more detailed surfaces"
        confidence = 0.7
    else:  # indistinguishable to this judge: it leans to the first image it was shown
        winner = 0
        reason = "the two images are equally faithful to the prompt and equally detailed; image 1 by a hair"
        confidence = 0.5
    verdict = {"verdict": ("first", "second")[winner], "reason": reason, "confidence": confidence}
    return Answer(json.dumps(verdict), {"scores": list(scores), "detail": [round(d, 3) for d in details]})
