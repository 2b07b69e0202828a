"""The offline teacher names the injected defects: precision and recall over 500 samples.

Each sample: a scene from sample_scene, a clean render (seed 2i) and a base-model render (seed
2i+1) with defects sampled at rate 0.7, 128×128. The teacher sees the prompt and both images'
measurements; its named defects are scored with `match_defects`.
"""

from curation.world.defects import DEFECT_KINDS
from curation.world.thinking import evaluate_defect_naming


def test_named_defects_match_the_injected_ones():
    report = evaluate_defect_naming(samples=500, size=128, rate=0.7, seed=0)
    print(
        f"\n{report.samples} samples at {report.size}px: precision {report.precision:.3f} recall {report.recall:.3f} "
        f"({report.true_positives} hits, {report.found} named, {report.injected} injected); checker accuracy "
        f"initial {report.initial_accuracy:.3f} vs high-quality {report.better_accuracy:.3f}"
    )
    for kind, (hits, named, injected) in report.per_kind.items():
        print(f"  {kind:17s} hits {hits:4d} named {named:4d} injected {injected:4d}")
    assert report.precision >= 0.9
    assert report.recall >= 0.9
    # Every kind was exercised and is found on its own, not just on average.
    for kind in DEFECT_KINDS:
        hits, named, injected = report.per_kind[kind]
        assert injected >= 10, kind
        assert hits / injected >= 0.8, kind
    assert report.better_accuracy >= 0.98 and report.initial_accuracy <= 0.6
