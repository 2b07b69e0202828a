"""One file per stage. `ALL_STAGES` lists them in data-flow order."""

from curation.stages.improving_thinking import ImprovingThinking
from curation.stages.initial_image import InitialImage
from curation.stages.initial_thinking import InitialThinking
from curation.stages.reference_image import ReferenceImage
from curation.stages.score import Score

ALL_STAGES = (ReferenceImage, InitialThinking, InitialImage, ImprovingThinking, Score)

__all__ = ["ALL_STAGES", "ImprovingThinking", "InitialImage", "InitialThinking", "ReferenceImage", "Score"]
