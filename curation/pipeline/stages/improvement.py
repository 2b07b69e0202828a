"""IRGL's premise, checked: the improved (high-quality) image answers the prompt better than the initial one.

alignment(prompt, improved) − alignment(prompt, initial) ≥ `min_margin`, else `improved_not_better`.
Both alignments and their difference go into lineage. `min_margin: null` switches the check off.
"""

from __future__ import annotations

from curation.pipeline.stages.base import Stage, StageContext
from curation.core import reasons
from curation.core.records import Reject, StageOutput


class Improvement(Stage):
    name = "improvement"
    needs = ("hq_image_quality", "initial_image_quality")
    makes = ("alignment_gain",)
    role = None
    optional = True  # runs when a scorer is configured (scorer=...)
    check = True
    defaults = {"enabled": True, "min_margin": None}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        margin = ctx.settings.get("min_margin")
        improved = inputs["hq_image_quality"].get("alignment")
        initial = inputs["initial_image_quality"].get("alignment")
        if improved is None or initial is None:
            if margin is None:
                return StageOutput(fields={"alignment_gain": None}, lineage={"min_margin": None})
            return self.reject(reasons.SCORE_NOT_MEASURED,
                               f"min_margin={margin} is set but the scorer measures no alignment")
        gain = improved - initial
        lineage = {"improved_alignment": improved, "initial_alignment": initial, "gain": gain, "min_margin": margin}
        if margin is not None and gain < margin:
            return self.reject(reasons.IMPROVED_NOT_BETTER,
                               f"alignment improved {improved:.4f} - initial {initial:.4f} = {gain:.4f} < {margin}")
        return StageOutput(fields={"alignment_gain": gain}, lineage=lineage)
