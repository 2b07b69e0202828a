"""Quality checks reach the dataset's description (manifest, card, report) and the semantic dedup
runs in the end-of-run pass."""

from __future__ import annotations

import sqlite3

import pyarrow.parquet as pq

from curation.writer import manifest
from curation.report import main as report_main
from tests.helpers import build


def test_card_and_report_show_score_histograms_and_accept_rates(tmp_path):
    out = build(tmp_path, "recipe=all", "n=6", "scorer=offline")
    doc = manifest.read(out)
    quality = doc["quality"]
    assert set(quality["modes"]) == set(doc["modes"])  # every mode runs hq_image_quality with a scorer
    checks = quality["modes"]["improving_full_learning"]["checks"]
    assert checks["improvement"]["checked"] == 6
    assets = {p.name for p in (out / "assets").iterdir()}
    assert "quality_accept_rate.png" in assets and "quality_improving_full_learning.png" in assets
    card = (out / "README.md").read_text()
    assert "## Quality checks" in card and "](assets/quality_accept_rate.png)" in card
    assert "| improving_full_learning | improvement | 6 |" in card
    index = report_main([f"data={out}", f"out={tmp_path / 'report'}"])
    page = index.read_text()
    assert "quality check" in page and "hq_image_quality" in page


def stored_preferences(cache) -> dict[str, float]:
    """Each sample's high-quality image preference score, as the scorer stage left it in the store."""
    with sqlite3.connect(cache / "store.sqlite") as db:
        rows = db.execute("SELECT sample_id, json_extract(value, '$.fields.hq_image_scores.preference') "
                          "FROM outcomes").fetchall()
    return {sid: value for sid, value in rows if value is not None}


def test_semantic_duplicates_keep_the_best_ranked_sample(tmp_path):
    """At similarity -1 every pair of embeddings is 'similar': all but the best-ranked sample are
    semantic duplicates naming it (the threshold decides, the dedup rank picks the original: these
    prompts-only rows have no source image, so the highest preference score, then the smallest id)."""
    out = build(tmp_path, "recipe=initial_full", "n=6", "scorer=offline", "gates.semantic_duplicate_similarity=-1.0")
    rejects = pq.read_table(out / "rejects" / "rejects.parquet").to_pylist()
    rows = [r for p in (out / "data" / "initial_full_learning").glob("*.parquet")
            for r in pq.read_table(p, columns=["sample_id"]).to_pylist()]
    assert len(rows) == 1
    kept = rows[0]["sample_id"]
    preference = stored_preferences(tmp_path / "cache")
    assert len(preference) == 6
    assert kept == min(preference, key=lambda sid: (-preference[sid], sid))
    semantic = [r for r in rejects if r["reason"] == "semantic_duplicate"]
    assert len(semantic) == 5 and all(kept in r["detail"] for r in semantic)
    assert manifest.read(out)["modes"]["initial_full_learning"]["sourced"] == 6
