"""The judge's preference rate per mode in the card: rows it kept by their lineage, pairs it rejected by the manifest."""

from __future__ import annotations

import json
from collections import Counter

from curation.writer import card, figures

MODE = "improving_full_learning"


def _lineage(outcome: str | None) -> str:
    stages = {"initial_image": {"key": "k"}}
    if outcome is not None:
        stages["pairwise_judge"] = {"key": "j", "outcome": outcome, "orders": []}
    return json.dumps({"stages": stages})


def test_the_rate_counts_kept_rows_by_outcome_and_the_judges_rejects():
    parts = [figures.Stats(), figures.Stats()]
    for part, outcomes in zip(parts, (["improved_preferred"] * 3 + ["orders_disagree"], ["improved_preferred"] * 2
                                       + ["orders_disagree"] * 2 + [None])):
        for outcome in outcomes:
            figures._add_lineage(part, MODE, _lineage(outcome))
    stats = figures.Stats.from_json(json.loads(json.dumps(parts[0].to_json())))  # what the card saves and reloads
    stats.merge(parts[1])  # shards are read apart and their stats added up
    doc = {"modes": {MODE: {"rejects_by_reason": {"pairwise_judge/initial_judged_better": 2, "gates/x": 4}},
                     "initial_full_learning": {"rejects_by_reason": {}}}}
    (mode, preferred, judged, counts), = figures.preference_rates(doc, stats)
    assert (mode, preferred, judged) == (MODE, 5, 10)
    assert counts == Counter(improved_preferred=5, orders_disagree=3, initial_judged_better=2)
    text = "\n".join(card._preference_lines(doc, stats))
    assert "| `improving_full` | 10 | 5 | 3 | 2 | 50.0% |" in text and "63.3%" in text


def test_no_judge_no_section():
    doc = {"modes": {MODE: {"rejects_by_reason": {}}}}
    assert figures.preference_rates(doc, figures.Stats()) == [] and card._preference_lines(doc, figures.Stats()) == []
