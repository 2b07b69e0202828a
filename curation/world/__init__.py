"""The offline world: a deterministic simulator that stands in for the models without a GPU.

scene     the prompt grammar (GenEval-like scenes) and its exact parser
render    a fast numpy renderer: the "generator" (clean = high-quality image, with defects = base model)
defects   what the simulated base model gets wrong, sampled and applied
analyse   segmentation and measurement of any image, blind to the scene
checker   GenEval-style correctness of an image for a scene, and the teacher's image comparison
thinking  the simulated teacher: initial and improving thinkings from prompt text and images
answers   what the simulated teacher answers to each prompt template (one module per template)

The function `analyse` is not re-exported here: it shares its name with its module, and the
package attribute `curation.world.analyse` must stay the module (for imports and monkeypatching).
Use `from curation.world.analyse import analyse`.
"""

from .analyse import DetectedObject, Observation
from .checker import CheckResult, Expectation, GroupCheck, check, find_defects
from .defects import DEFECT_KINDS, Defect, FoundDefect, InvalidDefect, match_defects, sample_defects
from .render import InvalidRenderSize, render_scene
from .scene import (
    BACKGROUNDS,
    COLORS,
    RELATIONS,
    SHAPES,
    SIZES,
    InvalidScene,
    ObjectGroup,
    PromptOutsideGrammar,
    Scene,
    parse_prompt,
    sample_scene,
    scene_to_prompt,
)
from .thinking import evaluate_defect_naming, write_improving_thinking, write_initial_thinking

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "DEFECT_KINDS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "CheckResult",
    "Defect",
    "Expectation",
    "DetectedObject",
    "FoundDefect",
    "GroupCheck",
    "InvalidDefect",
    "InvalidRenderSize",
    "InvalidScene",
    "ObjectGroup",
    "Observation",
    "PromptOutsideGrammar",
    "Scene",
    "check",
    "evaluate_defect_naming",
    "find_defects",
    "match_defects",
    "parse_prompt",
    "render_scene",
    "sample_defects",
    "sample_scene",
    "scene_to_prompt",
    "write_improving_thinking",
    "write_initial_thinking",
]
