"""A judge compares the initial and the improved image for the prompt, in both orders.

IRGL's improving modes teach the step from the initial image to the improved one, so a pair whose
"improved" image a judge prefers less is a wrong lesson. A chat model (the `judge` role: the
teacher unless `+teacher@judge=vllm_server judge.base_url=... judge.model=...` selects another) is
shown the prompt and both images twice, once in each order, which cancels its position bias, and
answers `{"verdict": "first"|"second", "reason": ..., "confidence": 0..1}`. An answer that does not
parse is asked again with a new seed, up to `validation_attempts`, then `judge_unparseable`.

The outcome, in lineage with both verdicts:
- `improved_preferred`: both orders prefer the improved image;
- `initial_preferred`: both prefer the initial image: the sample is rejected as `initial_judged_better`;
- `orders_disagree`: each order prefers the image it showed in the same place. Kept, flagged:
  the verdict followed the position, not the images, so it says the judge cannot tell them
  apart, not that the initial image is better (subtle defects, lost detail, land here; the
  scorer's `improvement` margin is the tool for a hard threshold). The card's preference rate
  (improved preferred / judged) counts these as not preferred.

Off by default; `recipe=improving_full_judged` (or `stages.pairwise_judge.enabled=true`) turns it on
for the improving modes.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from curation.backends.base import ChatRequest
from curation.core.records import Reject, StageOutput
from curation.pipeline.stages.base import ChatStage, StageContext

INITIAL_JUDGED_BETTER = "initial_judged_better"
JUDGE_UNPARSEABLE = "judge_unparseable"
IMPROVED_PREFERRED, INITIAL_PREFERRED, ORDERS_DISAGREE = "improved_preferred", "initial_preferred", "orders_disagree"

# Which image a model means, however it names it.
_POSITIONS = {"first": 0, "1": 0, "image 1": 0, "image1": 0, "a": 0, "left": 0,
              "second": 1, "2": 1, "image 2": 1, "image2": 1, "b": 1, "right": 1}
_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_FIELD = re.compile(r'"?(verdict|reason|confidence)"?\s*[:=]\s*"?([^"\n,}]*)"?', re.IGNORECASE)


def parse_verdict(text: str) -> dict[str, Any] | str:
    """`{"verdict": "first"|"second", "reason", "confidence"}` from a judge's answer, or what is wrong with it.

    Accepts the JSON object anywhere in the text (code fences, words around it), or `key: value`
    lines; the verdict as first/second, 1/2, "image 1", A/B; the confidence as 0..1 or a percentage."""
    fields: dict[str, Any] = {}
    for candidate in _OBJECT.findall(text):
        try:
            parsed = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and "verdict" in parsed:
            fields = {k.lower(): v for k, v in parsed.items()}
            break
    if not fields:
        fields = {m.group(1).lower(): m.group(2).strip() for m in _FIELD.finditer(text)}
    position = _POSITIONS.get(str(fields.get("verdict", "")).strip().lower().rstrip("."))
    if position is None:
        return f"no verdict naming the first or the second image in {text[:200]!r}"
    confidence = fields.get("confidence")
    try:
        confidence = None if confidence in (None, "") else float(str(confidence).rstrip("%"))
    except ValueError:
        return f"the confidence {confidence!r} is not a number"
    if confidence is not None and 1 < confidence <= 100:
        confidence /= 100  # "85" or "85%"
    if confidence is not None and not 0 <= confidence <= 1:
        return f"the confidence {confidence} is outside 0..1"
    return {"verdict": ("first", "second")[position], "reason": str(fields.get("reason", "")).strip(),
            "confidence": confidence}


class PairwiseJudge(ChatStage):
    name = "pairwise_judge"
    needs = ("prompt", "initial_image", "hq_image")
    makes = ("judge_outcome",)
    role = "judge"
    role_fallback = "teacher"  # the teacher judges unless a judge is configured
    template = "judge_pairwise"
    images = ("first", "second")
    texts = ("prompt",)
    optional = True
    check = True
    defaults = {"enabled": False, "validation_attempts": 3}

    async def run(self, inputs, ctx: StageContext) -> StageOutput | Reject:
        initial, improved = await ctx.load_image_input(inputs["initial_image"]), await ctx.load_image_input(inputs["hq_image"])
        orders = (("initial", initial, "improved", improved), ("improved", improved, "initial", initial))
        # The two orders are independent requests: both in flight at once, each with its own seeds.
        judged = await asyncio.gather(*(self._ask(inputs["prompt"], order, ctx, ctx.seed + 1000 * i)
                                        for i, order in enumerate(orders)))
        for result in judged:
            if isinstance(result, Reject):
                return result
        winners = {v["winner"] for v in judged}
        outcome = (IMPROVED_PREFERRED if winners == {"improved"} else INITIAL_PREFERRED if winners == {"initial"}
                   else ORDERS_DISAGREE)
        if outcome == INITIAL_PREFERRED:
            return self.reject(INITIAL_JUDGED_BETTER, "; ".join(
                f"{v['shown_first']} shown first: {v['winner']} preferred ({v['reason']})" for v in judged))
        return StageOutput(fields={"judge_outcome": outcome},
                           lineage={"template": self.chat_template.tag, "outcome": outcome, "orders": list(judged)})

    async def _ask(self, prompt: str, order: tuple, ctx: StageContext, seed: int) -> dict[str, Any] | Reject:
        first_name, first, second_name, second = order
        attempts = int(ctx.settings["validation_attempts"])
        problem = ""
        for attempt in range(attempts):
            request = ChatRequest(self.chat_template, {"prompt": prompt}, {"first": first, "second": second},
                                  seed + attempt)
            result = await ctx.backend.chat(request)
            if isinstance(result, Reject):
                return result
            parsed = parse_verdict(result.text)
            if isinstance(parsed, dict):
                winner = first_name if parsed["verdict"] == "first" else second_name
                return {"shown_first": first_name, **parsed, "winner": winner, "seed": seed + attempt,
                        "attempts": attempt + 1, **result.lineage}
            problem = parsed
        return self.reject(JUDGE_UNPARSEABLE, f"{first_name} shown first: {problem} (after {attempts} attempts)")
