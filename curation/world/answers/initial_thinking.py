"""The initial thinking: a plan of the prompt's scene, consistent with what the high-quality image shows."""

from __future__ import annotations

from curation.world.analyse import analyse
from curation.world.answers import Answer, answers
from curation.world.thinking import write_initial_thinking


@answers("teacher_initial_thinking")
def plan(values, images, seed) -> Answer:
    return Answer(write_initial_thinking(values["prompt"], analyse(images["hq_image"]), seed))
