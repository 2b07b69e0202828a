"""IRGL's premise, checked: the improved (high-quality) image is better than the initial one.

Two margins, each switched off by `null`:
- alignment(prompt, improved) − alignment(prompt, initial) ≥ `min_margin`, else `improved_not_better`;
- preference(prompt, improved) − preference(prompt, initial) ≥ `min_preference_margin`, else
  `preference_not_better` (a reward model such as PickScore, which also weighs how an image looks).
The alignment check comes first. Both scores of each pair and their differences go into lineage.
"""

from __future__ import annotations

from curation.pipeline.stages.base import Stage, StageContext
from curation.core import reasons
from curation.core.records import Reject, StageOutput

# (score, margin knob, reject reason, lineage names): the checks in the order they are made.
MARGINS = (
    ("alignment", "min_margin", reasons.IMPROVED_NOT_BETTER, ("improved_alignment", "initial_alignment", "gain")),
    ("preference", "min_preference_margin", reasons.PREFERENCE_NOT_BETTER,
     ("improved_preference", "initial_preference", "preference_gain")),
)


class Improvement(Stage):
    name = "improvement"
    needs = ("hq_image_quality", "initial_image_quality")
    makes = ("alignment_gain",)
    role = None
    optional = True  # runs when a scorer is configured (scorer=...)
    check = True
    defaults = {"enabled": True, "min_margin": None}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        lineage: dict = {}
        gains: dict = {}
        for score, knob, reason, (improved_name, initial_name, gain_name) in MARGINS:
            margin = ctx.settings.get(knob)
            improved = inputs["hq_image_quality"].get(score)
            initial = inputs["initial_image_quality"].get(score)
            if improved is None or initial is None:
                if margin is not None:
                    return self.reject(reasons.SCORE_NOT_MEASURED, f"{knob}={margin} is set but the scorer "
                                                                   f"measures no {score}")
                lineage[knob] = None
                continue
            gain = gains[score] = improved - initial
            lineage.update({improved_name: improved, initial_name: initial, gain_name: gain, knob: margin})
            if margin is not None and gain < margin:
                return self.reject(reason, f"{score} improved {improved:.4f} - initial {initial:.4f} = {gain:.4f} "
                                           f"< {margin}")
        return StageOutput(fields={"alignment_gain": gains.get("alignment")}, lineage=lineage)
