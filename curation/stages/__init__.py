"""One file per stage. `ALL_STAGES` lists them in data-flow order."""

from curation.stages.improving_plan import BasePlanForImproving, TeacherPlanForImproving
from curation.stages.improving_thinking import ImprovingThinking
from curation.stages.initial_image import InitialImage
from curation.stages.initial_thinking import InitialThinking
from curation.stages.reference_image import ReferenceImage
from curation.stages.score import Score

# Data-flow order. Two stages make `improving_initial_thinking`; a plan keeps one of them.
ALL_STAGES = (ReferenceImage, InitialThinking, InitialImage, TeacherPlanForImproving, BasePlanForImproving,
              ImprovingThinking, Score)

__all__ = ["ALL_STAGES", "BasePlanForImproving", "TeacherPlanForImproving", "ImprovingThinking", "InitialImage", "InitialThinking", "ReferenceImage", "Score"]
