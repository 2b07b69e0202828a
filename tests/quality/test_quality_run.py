"""Quality stages in real runs: planned for every mode, scores in lineage, rejects by threshold.

`scorer=clip scorer.model=<dir>` on a Hub-style source (a local parquet made here, `source=hf`):
the tiny CLIP's projections, the aesthetic head and the classifier are planted so that chosen rows
fail chosen checks; the run must reject exactly those rows with exactly those reasons, keep
sourced = accepted + rejected, and record every score with its model in the accepted rows' lineage.
"""

from __future__ import annotations

import io
import json

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from curation.pipeline.plan import build_plan
from curation.core import schema
from curation.writer import manifest
from curation.run import main
from tests.helpers import backend_calls, build
from tests.quality.test_scorers import clip_embeddings
from tests.quality.tiny_models import plant_aesthetic_head, plant_clip_alignment, plant_unsafe
from tests.sources.test_recipe_run import distinct_world_rows

MODE = "initial_full_learning"
IMPROVING = "improving_full_learning"
# Per row: planted alignment, aesthetic, unsafe logit, and the reject reason they must give (None: kept).
PLANTED = [
    (0.50, 6.0, -4.0, None),
    (0.10, 6.0, -4.0, "low_alignment"),
    (0.45, 2.0, -4.0, "low_aesthetic"),
    (0.40, 6.5, 4.0, "unsafe"),
    (0.60, 7.0, -3.0, None),
    # Every score just inside its threshold (0.3, 5.0, p=0.5). Not exactly on it: a planted value comes back
    # through float32 model arithmetic within ~1e-6, so "exactly equal" is a unit test (test_scorers.py).
    (0.301, 5.001, -0.01, None),
    (0.05, 1.0, 5.0, "low_alignment"),  # fails all three: the first check's reason
    (0.55, 5.5, -2.0, None),
    (0.35, 8.0, 1.0, "unsafe"),
    (0.48, 4.0, -1.0, "low_aesthetic"),
]
THRESHOLDS = ["stages.hq_image_quality.min_alignment=0.3", "stages.hq_image_quality.min_aesthetic=5.0",
              "stages.hq_image_quality.max_unsafe=0.5"]
NO_FLOOR = "stages.hq_image_quality.min_alignment=null"  # clip.yaml's default floor would drop rows 1 and 6


def test_plan_puts_quality_stages_in_every_mode_before_the_teacher():
    modes = {m: 4 for m in schema.MODE_KEYS}
    plan = build_plan(modes, source_provides_images=True, roles={"scorer"})
    teacher_stages = {s.name for s in plan.stages if s.role == "teacher"}
    for mode, stages in plan.mode_stages.items():
        first_teacher = min(stages.index(s) for s in teacher_stages if s in stages)
        assert stages.index("score_hq_image") < stages.index("hq_image_quality") < first_teacher
        uses_initial = "initial_image" in stages
        assert uses_initial == ("improvement" in stages) == ("initial_image_quality" in stages)
        if uses_initial:
            assert stages.index("improvement") < stages.index("improving_thinking")
    assert "improvement" in plan.mode_stages[IMPROVING] and "improvement" not in plan.mode_stages[MODE]
    plain = build_plan(modes, source_provides_images=True)
    assert not {"score_hq_image", "hq_image_quality"} & {s.name for s in plain.stages}


@pytest.fixture
def planted_source(tmp_path, model_copy):
    world = distinct_world_rows(len(PLANTED))
    prompts, images = [p for p, _ in world], [img for _, img in world]
    folder = tmp_path / "dataset"
    folder.mkdir()
    rows = []
    for prompt, image in world:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        rows.append({"caption": prompt, "image": {"bytes": buffer.getvalue(), "path": None}})
    features = datasets.Features({"caption": datasets.Value("string"), "image": datasets.Image()})
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(folder / "train.parquet"))

    clip, classifier = model_copy("clip"), model_copy("classifier")
    plant_clip_alignment(clip, prompts, images, [p[0] for p in PLANTED])
    head = tmp_path / "aesthetic.safetensors"
    plant_aesthetic_head(head, clip_embeddings(clip, prompts, images), [p[1] for p in PLANTED])
    plant_unsafe(classifier, images, [p[2] for p in PLANTED])
    return {"folder": folder, "clip": clip, "head": head, "classifier": classifier}


def hf_run(tmp_path, src, *extra):
    return main([f"n={len(PLANTED)}", "source=hf", f"source.path={src['folder']}", "source.prompt_column=caption",
                 f"source.cache_dir={tmp_path / 'hf-cache'}", "gates.min_side=96", "image_size=128",
                 "scorer=clip", f"scorer.model={src['clip']}", "scorer.model_id=tiny/clip",
                 f"scorer.aesthetic_head={src['head']}", f"scorer.safety_model={src['classifier']}",
                 "scorer.device=cpu", "scorer.max_batch_size=4", f"cache={tmp_path / 'cache'}",
                 "run.progress_interval_s=600", *extra])


def test_clip_run_on_a_hub_source_rejects_exactly_the_planted_rows(tmp_path, planted_source):
    out = hf_run(tmp_path, planted_source, "recipe=initial_full", *THRESHOLDS, f"out={tmp_path / 'ds'}")

    rejects = pq.read_table(out / "rejects" / "rejects.parquet").to_pylist()
    got = {r["source_id"]: (r["stage"], r["reason"]) for r in rejects if r["mode"] == MODE}
    expected = {f"train:{i}": ("hq_image_quality", reason) for i, (*_, reason) in enumerate(PLANTED) if reason}
    assert got == expected
    summary = manifest.read(out)["modes"][MODE]
    assert summary["sourced"] == len(PLANTED) == summary["accepted"] + summary["rejected"]

    accepted = [r for p in sorted((out / "data" / MODE).glob("*.parquet"))
                for r in pq.read_table(p, columns=["source_id", "lineage"]).to_pylist()]
    assert {r["source_id"] for r in accepted} == {f"train:{i}" for i, p in enumerate(PLANTED) if p[3] is None}
    for row in accepted:
        i = int(row["source_id"].split(":")[1])
        stages = json.loads(row["lineage"])["stages"]
        scored = stages["score_hq_image"]
        assert scored["alignment"]["id"] == "tiny/clip" and scored["alignment"]["revision"].startswith("local-")
        assert scored["aesthetic"]["revision"].startswith("sha256-") and scored["unsafe"]["id"] == "classifier-copy"
        assert abs(scored["alignment"]["value"] - PLANTED[i][0]) < 1e-4
        assert abs(scored["aesthetic"]["value"] - PLANTED[i][1]) < 1e-3
        assert abs(scored["unsafe"]["value"] - 1 / (1 + np.exp(-PLANTED[i][2]))) < 1e-5
        assert stages["hq_image_quality"]["thresholds"] == {"min_alignment": 0.3, "min_aesthetic": 5.0,
                                                            "max_unsafe": 0.5}


def test_improvement_margin_rejects_exactly_the_rows_below_it_without_scoring_again(tmp_path, planted_source):
    """First without a margin (every gain in lineage), then with the median gain as the margin."""
    first = hf_run(tmp_path, planted_source, "recipe=improving_full", "stages.improvement.min_margin=null", NO_FLOOR,
                   f"out={tmp_path / 'free'}")
    kept = [r for p in sorted((first / "data" / IMPROVING).glob("*.parquet"))
            for r in pq.read_table(p, columns=["source_id", "lineage"]).to_pylist()]
    assert len(kept) == len(PLANTED)  # no floors on the hq image here, no margin: everything passes
    gains = {}
    for row in kept:
        improvement = json.loads(row["lineage"])["stages"]["improvement"]
        improved, initial = improvement["improved_alignment"], improvement["initial_alignment"]
        assert improvement["gain"] == pytest.approx(improved - initial)
        assert "alignment" in json.loads(row["lineage"])["stages"]["score_initial_image"]
        gains[row["source_id"]] = improvement["gain"]
    margin = float(np.median(sorted(gains.values())))

    second = hf_run(tmp_path, planted_source, "recipe=improving_full", f"stages.improvement.min_margin={margin}",
                    NO_FLOOR,
                    f"out={tmp_path / 'margin'}")
    rejects = pq.read_table(second / "rejects" / "rejects.parquet").to_pylist()
    got = {r["source_id"]: r["reason"] for r in rejects if r["mode"] == IMPROVING}
    assert got == {sid: "improved_not_better" for sid, gain in gains.items() if gain < margin}
    assert 0 < len(got) < len(PLANTED)
    calls = backend_calls(second)
    assert calls.get("score_hq_image", 0) == calls.get("score_initial_image", 0) == 0  # scores came from the store
    summary = manifest.read(second)["modes"][IMPROVING]
    assert summary["sourced"] == summary["accepted"] + summary["rejected"] == len(PLANTED)


def test_offline_scorer_run_records_scores_and_keeps_sourced_equal_accepted_plus_rejected(tmp_path):
    out = build(tmp_path, "recipe=all", "n=6", "scorer=offline")
    doc = manifest.read(out)
    for mode, summary in doc["modes"].items():
        assert summary["sourced"] == summary["accepted"] + summary["rejected"] == 6
    rows = pq.read_table(next((out / "data" / IMPROVING).glob("*.parquet")), columns=["lineage"]).to_pylist()
    for row in rows:
        stages = json.loads(row["lineage"])["stages"]
        assert stages["score_hq_image"]["alignment"]["id"] == "offline-world/analyser"
        assert stages["improvement"]["gain"] >= 0.0
        # The world's simulated preference, checked by offline.yaml's min_preference_margin 0.0.
        assert stages["score_hq_image"]["preference"]["id"] == "offline-world/analyser"
        assert stages["improvement"]["preference_gain"] >= 0.0 == stages["improvement"]["min_preference_margin"]


def pickscore_run(tmp_path, src, *extra):
    """`scorer=pickscore` with the tiny CLIP standing in for PickScore (the same architecture)."""
    return main([f"n={len(PLANTED)}", "source=hf", f"source.path={src['folder']}", "source.prompt_column=caption",
                 f"source.cache_dir={tmp_path / 'hf-cache'}", "gates.min_side=96", "image_size=128",
                 "recipe=improving_full", "scorer=pickscore", f"scorer.preference_model={src['clip']}",
                 "scorer.preference_id=tiny/pickscore", "scorer.device=cpu", "scorer.max_batch_size=4",
                 f"cache={tmp_path / 'cache'}", "run.progress_interval_s=600", *extra])


def test_preference_margin_rejects_exactly_the_rows_below_it_and_reaches_lineage_and_card(tmp_path, planted_source):
    first = pickscore_run(tmp_path, planted_source, "stages.improvement.min_preference_margin=null",
                          f"out={tmp_path / 'free'}")
    kept = [r for p in sorted((first / "data" / IMPROVING).glob("*.parquet"))
            for r in pq.read_table(p, columns=["source_id", "lineage"]).to_pylist()]
    assert len(kept) == len(PLANTED)
    gains = {}
    for row in kept:
        stages = json.loads(row["lineage"])["stages"]
        improvement = stages["improvement"]
        assert improvement["preference_gain"] == pytest.approx(improvement["improved_preference"]
                                                               - improvement["initial_preference"])
        assert stages["score_hq_image"]["preference"]["value"] == improvement["improved_preference"]
        assert stages["score_hq_image"]["preference"]["id"] == "tiny/pickscore"
        assert stages["score_initial_image"]["preference"]["value"] == improvement["initial_preference"]
        gains[row["source_id"]] = improvement["preference_gain"]
    margin = float(np.median(sorted(gains.values())))

    second = pickscore_run(tmp_path, planted_source, f"stages.improvement.min_preference_margin={margin}",
                           f"out={tmp_path / 'margin'}")
    rejects = pq.read_table(second / "rejects" / "rejects.parquet").to_pylist()
    got = {r["source_id"]: (r["stage"], r["reason"]) for r in rejects if r["mode"] == IMPROVING}
    assert got == {sid: ("improvement", "preference_not_better") for sid, gain in gains.items() if gain < margin}
    assert 0 < len(got) < len(PLANTED)
    calls = backend_calls(second)
    assert calls.get("score_hq_image", 0) == calls.get("score_initial_image", 0) == 0  # scores came from the store
    quality = manifest.read(second)["quality"]
    scores = quality["modes"][IMPROVING]["scores"]
    assert scores["preference gain"]["n"] == scores["hq preference"]["n"] == len(PLANTED)
    assert quality["thresholds"]["improvement"]["min_preference_margin"] == margin
    assert quality["modes"][IMPROVING]["checks"]["improvement"]["rejected"] == {"preference_not_better": len(got)}
    assert "preference_not_better" in (second / "README.md").read_text()
