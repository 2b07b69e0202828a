"""One file per stage. `ALL_STAGES` lists them in data-flow order."""

from curation.build.stages.improving_plan import BasePlanForImproving, TeacherPlanForImproving
from curation.build.stages.improving_thinking import ImprovingThinking
from curation.build.stages.initial_image import InitialImage
from curation.build.stages.initial_thinking import InitialThinking
from curation.build.stages.reference_image import ReferenceImage
from curation.build.stages.score import Score

# Data-flow order. Two stages make `improving_initial_thinking`; a plan keeps one of them.
ALL_STAGES = (ReferenceImage, InitialThinking, InitialImage, TeacherPlanForImproving, BasePlanForImproving,
              ImprovingThinking, Score)

__all__ = ["ALL_STAGES", "BasePlanForImproving", "TeacherPlanForImproving", "ImprovingThinking", "InitialImage", "InitialThinking", "ReferenceImage", "Score"]
