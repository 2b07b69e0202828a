"""One file per stage. `ALL_STAGES` lists them in data-flow order."""

from curation.pipeline.stages.hq_image_quality import HqImageQuality
from curation.pipeline.stages.improvement import Improvement
from curation.pipeline.stages.improving_plan import BasePlanForImproving, TeacherPlanForImproving
from curation.pipeline.stages.improving_thinking import ImprovingThinking
from curation.pipeline.stages.initial_image import InitialImage
from curation.pipeline.stages.initial_image_quality import InitialImageQuality
from curation.pipeline.stages.initial_thinking import InitialThinking
from curation.pipeline.stages.reference_image import ReferenceImage
from curation.pipeline.stages.score import Score
from curation.pipeline.stages.score_hq_image import ScoreHqImage
from curation.pipeline.stages.score_initial_image import ScoreInitialImage

# Data-flow order. Two stages make `improving_initial_thinking`; a plan keeps one of them.
# The quality stages sit right after the image they judge, before any teacher call that uses it.
ALL_STAGES = (ReferenceImage, ScoreHqImage, HqImageQuality, InitialThinking, InitialImage, ScoreInitialImage,
              InitialImageQuality, Improvement, TeacherPlanForImproving, BasePlanForImproving, ImprovingThinking,
              Score)

# In a plan only when a scorer is configured (`scorer=`).
QUALITY_STAGES = (ScoreHqImage, HqImageQuality, ScoreInitialImage, InitialImageQuality, Improvement)

__all__ = ["ALL_STAGES", "QUALITY_STAGES", "BasePlanForImproving", "TeacherPlanForImproving", "HqImageQuality",
           "Improvement", "ImprovingThinking", "InitialImage", "InitialImageQuality", "InitialThinking",
           "ReferenceImage", "Score", "ScoreHqImage", "ScoreInitialImage"]
