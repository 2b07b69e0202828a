"""The manifest: a machine-readable account of a built dataset (counts, config, versions, timings).

Unlike the shards it may hold wall-clock values; secrets are redacted before it is written.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig

from curation import __version__

from curation.core import schema
from curation.core.config import redact
from curation.publish.emit import ModeSummary, write_file_atomic

PACKAGES = ("datasets", "pyarrow", "pillow", "numpy", "hydra-core", "huggingface_hub", "openai", "torch",
            "transformers", "vllm")
FILENAME = "manifest.json"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def score_summary(outcomes: Iterable[dict]) -> dict[str, Any] | None:
    """Mean checker accuracy of initial vs improved images, where the checker scored both."""
    n, initial_acc, improved_acc, initial_score, improved_score = 0, 0.0, 0.0, 0.0, 0.0
    for outcome in outcomes:
        fields = outcome["fields"]
        if isinstance(fields.get("initial_score"), dict) and isinstance(fields.get("improved_score"), dict):
            n += 1
            initial_acc += fields["initial_score"]["accuracy"]
            improved_acc += fields["improved_score"]["accuracy"]
            initial_score += fields["initial_score"]["score"]
            improved_score += fields["improved_score"]["score"]
    if n == 0:
        return None
    return {"samples": n, "initial_accuracy": initial_acc / n, "improved_accuracy": improved_acc / n,
            "initial_score": initial_score / n, "improved_score": improved_score / n}


def build(cfg: DictConfig, plan, summaries: list[ModeSummary], identities: dict, stats, scores,
          accounting: dict, elapsed: float) -> dict:
    run = {"backend_calls": dict(sorted(stats.computed.items())), "cached": dict(sorted(stats.cached.items())),
           "rejected": dict(sorted(stats.rejected.items())), "elapsed_s": round(elapsed, 3)}
    if accounting:
        run["backends"] = accounting  # per-run accounting the backends keep (teachers: calls, tokens, wall)
    teacher_s = (accounting.get("teacher") or {}).get("wall_s")
    if teacher_s:
        run["accepted_per_teacher_hour"] = {s.mode: round(s.accepted * 3600 / teacher_s, 1) for s in summaries}
    return {
        "recipe": cfg.recipe.name,
        "pipeline_version": __version__,
        "schema_version": schema.schema_version(),
        "shard": {"index": cfg.shard, "count": cfg.num_shards},
        "modes": {s.mode: {"sourced": s.sourced, "accepted": s.accepted, "rejected": s.rejected,
                           "rejects_by_reason": dict(sorted(s.rejects_by_reason.items())), "shards": s.shards,
                           "stages": list(plan.mode_stages[s.mode])}
                  for s in summaries},
        "backends": identities,
        "checker": scores,
        "run": run,
        "versions": {"python": platform.python_version(), **package_versions()},
        "config": redact(cfg),
    }


def write(out: Path, doc: dict) -> None:
    write_file_atomic(out / FILENAME, json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def read(out: Path) -> dict:
    return json.loads((Path(out) / FILENAME).read_text())
