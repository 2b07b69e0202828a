"""The improving thinking: both images segmented and compared object by object, the differences named."""

from __future__ import annotations

from curation.world.analyse import analyse
from curation.world.answers import Answer, answers
from curation.world.thinking import write_improving_thinking


@answers("teacher_improving_thinking")
def critique(values, images, seed) -> Answer:
    initial, target = analyse(images["initial_image"]), analyse(images["hq_image"])
    text, found = write_improving_thinking(values["prompt"], values["improving_initial_thinking"], initial, target, seed)
    return Answer(text, {"named_defects": [f.to_json() for f in found]})
