"""The quality summary counts every scored sample per mode, and its figures are reproducible."""

from __future__ import annotations

import io

from PIL import Image

from curation.core.records import Outcome, Reject
from curation.writer import quality_figures

MODES = {"initial_full_learning": ("score_hq_image", "hq_image_quality", "initial_thinking"),
         "improving_full_learning": ("score_hq_image", "hq_image_quality", "initial_image", "score_initial_image",
                                     "initial_image_quality", "improvement", "improving_thinking")}


def outcome(index, hq, initial=None, rejects=None):
    lineage = {"score_hq_image": {"alignment": {"value": hq, "id": "m"}}}
    if rejects is None or "hq_image_quality" not in rejects:
        lineage["hq_image_quality"] = {"scores": {"alignment": hq}}
    if initial is not None:
        lineage["score_initial_image"] = {"alignment": {"value": initial}}
        lineage["initial_image_quality"] = {}
        if not rejects:
            lineage["improvement"] = {"gain": hq - initial}
    return Outcome(f"{index:016x}", f"s:{index}", index, lineage=lineage, rejects=rejects or {})


def reject(reason):
    return Reject("x", reason)


def summary():
    outcomes = [
        outcome(0, 0.5, 0.2),
        outcome(1, 0.1, rejects={"hq_image_quality": reject("low_alignment")}),
        outcome(2, 0.4, 0.45, rejects={"improvement": reject("improved_not_better")}),
        outcome(3, 0.6),  # only sourced for the initial mode
    ]
    counts = {"initial_full_learning": 4, "improving_full_learning": 3}
    summary = quality_figures.QualitySummary(counts, MODES, {"hq_image_quality": {"min_alignment": 0.3},
                                                             "improvement": {"min_margin": 0}})
    assert list(summary.observe(outcomes)) == outcomes  # passes every outcome through, in order
    return summary.to_json()


def test_summary_counts_rejected_samples_too():
    s = summary()
    initial = s["modes"]["initial_full_learning"]
    assert initial["scores"]["hq alignment"]["n"] == 4  # the rejected row's score is in the histogram
    assert initial["checks"] == {"hq_image_quality": {"checked": 4, "passed": 3, "rejected": {"low_alignment": 1}}}
    improving = s["modes"]["improving_full_learning"]
    # The gain of the sample the margin rejected is in its histogram too (read from the two scores).
    assert improving["scores"]["initial alignment"]["n"] == 2 and improving["scores"]["alignment gain"]["n"] == 2
    assert improving["scores"]["alignment gain"]["min"] == -0.05
    assert improving["checks"]["improvement"] == {"checked": 2, "passed": 1, "rejected": {"improved_not_better": 1}}
    assert sum(improving["scores"]["hq alignment"]["counts"]) == 3
    rates = {(m, c): r for m, c, _, r in quality_figures.accept_rates(s)}
    assert rates[("initial_full_learning", "hq_image_quality")] == 0.75


def test_no_quality_stage_means_no_summary_and_no_figures():
    empty = quality_figures.QualitySummary({"initial_full_learning": 1}, {"initial_full_learning": ("initial_thinking",)})
    assert empty.to_json() is None
    assert quality_figures.plots(None) == {} and quality_figures.card_lines(None) == []


def test_figures_and_card_lines_are_reproducible():
    first, second = quality_figures.plots(summary()), quality_figures.plots(summary())
    assert first == second
    assert set(first) == {"quality_initial_full_learning.png", "quality_improving_full_learning.png",
                          "quality_accept_rate.png"}
    for data in first.values():
        Image.open(io.BytesIO(data)).verify()
    lines = quality_figures.card_lines(summary(), first)
    assert "| initial_full_learning | hq_image_quality | 4 | 75.0% | low_alignment: 1 |" in lines
    assert "![quality_accept_rate](assets/quality_accept_rate.png)" in lines


def test_histograms_in_bounded_memory_keep_exact_counts_and_extremes():
    """Scores are counted into fixed fine bins (memory independent of n); the shown histogram spans
    the values seen, holds every value once, and min/max/mean are exact."""
    import numpy as np

    values = np.random.default_rng(0).uniform(0.12, 0.37, size=5000)
    modes = {"initial_full_learning": ("score_hq_image", "hq_image_quality")}
    summary = quality_figures.QualitySummary({"initial_full_learning": len(values)}, modes)
    for i, v in enumerate(values):
        summary.add(Outcome(f"{i:016x}", f"s:{i}", i, lineage={"score_hq_image": {"alignment": {"value": float(v)}},
                                                               "hq_image_quality": {}}))
    hist = summary.to_json()["modes"]["initial_full_learning"]["scores"]["hq alignment"]
    assert hist["n"] == len(values) == sum(hist["counts"])
    assert hist["min"] == round(values.min(), 6) and hist["max"] == round(values.max(), 6)
    assert abs(hist["mean"] - values.mean()) < 1e-6
    assert hist["edges"][0] <= values.min() and hist["edges"][-1] >= values.max()
    assert len(hist["counts"]) <= quality_figures.BINS
    edges = np.asarray(hist["edges"])
    assert np.array_equal(np.histogram(values, bins=edges)[0], hist["counts"])
