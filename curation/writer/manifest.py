"""The manifest: a machine-readable account of a built dataset (counts, config, versions, timings).

One typed record (`Manifest`, with a `ModeSummary` per mode and a `RunAccount`), written as
`manifest.json`. Unlike the shards it may hold wall-clock values; secrets are redacted before it
is written.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

from omegaconf import DictConfig

from curation import __version__
from curation.core import schema
from curation.core.config import redact
from curation.core.records import Outcome
from curation.core.files import write_atomic

PACKAGES = ("datasets", "pyarrow", "pillow", "numpy", "hydra-core", "huggingface_hub", "openai", "torch",
            "transformers", "vllm")
FILENAME = "manifest.json"


@dataclass
class ModeSummary:
    """One mode's account: sourced = accepted + rejected, rejects by `stage/reason`, its shards."""

    mode: str
    stages: list[str] = field(default_factory=list)
    sourced: int = 0
    accepted: int = 0
    rejected: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    shards: list[dict] = field(default_factory=list)

    def add_reject(self, stage: str, reason: str, count: int = 1) -> None:
        self.rejected += count
        key = f"{stage}/{reason}"
        self.rejects_by_reason[key] = self.rejects_by_reason.get(key, 0) + count

    def to_json(self) -> dict:
        return {"sourced": self.sourced, "accepted": self.accepted, "rejected": self.rejected,
                "rejects_by_reason": dict(sorted(self.rejects_by_reason.items())), "shards": self.shards,
                "stages": list(self.stages)}

    @classmethod
    def from_json(cls, mode: str, data: dict) -> "ModeSummary":
        return cls(mode=mode, stages=list(data.get("stages", [])), sourced=data["sourced"],
                   accepted=data["accepted"], rejected=data["rejected"],
                   rejects_by_reason=dict(data["rejects_by_reason"]), shards=list(data["shards"]))


@dataclass
class RunAccount:
    """What the run did: stage results computed, read from the store, rejected; wall time; the
    backends' own accounting (requests, attempts, latency, tokens) — never part of the shards."""

    backend_calls: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    first_result_s: float | None = None  # from the start to the first backend call's result
    emit_s: float | None = None  # the one pass over the outcomes into shards and rejects
    backends: dict[str, Any] = field(default_factory=dict)
    accepted_per_teacher_hour: dict[str, float] = field(default_factory=dict)
    gpu_hours: dict[str, Any] | None = None  # writer/gpu_hours.py: per role and total, per 1K accepted rows

    def rate_accepted(self, summaries: Iterable["ModeSummary"]) -> None:
        """Accepted rows per hour of the teacher in use, per mode (when the teacher kept its time)."""
        teacher_s = (self.backends.get("teacher") or {}).get("wall_s")
        if teacher_s:
            self.accepted_per_teacher_hour = {s.mode: round(s.accepted * 3600 / teacher_s, 1) for s in summaries}

    def to_json(self) -> dict:
        out: dict[str, Any] = {"backend_calls": dict(sorted(self.backend_calls.items())),
                               "cached": dict(sorted(self.cached.items())),
                               "rejected": dict(sorted(self.rejected.items())), "elapsed_s": round(self.elapsed_s, 3)}
        for name in ("first_result_s", "emit_s"):
            if getattr(self, name) is not None:
                out[name] = round(getattr(self, name), 3)
        if self.backends:
            out["backends"] = self.backends
        if self.accepted_per_teacher_hour:
            out["accepted_per_teacher_hour"] = self.accepted_per_teacher_hour
        if self.gpu_hours:
            out["gpu_hours"] = self.gpu_hours
        return out

    @classmethod
    def from_json(cls, data: dict) -> "RunAccount":
        return cls(backend_calls=dict(data["backend_calls"]), cached=dict(data["cached"]),
                   rejected=dict(data["rejected"]), elapsed_s=data["elapsed_s"],
                   first_result_s=data.get("first_result_s"), emit_s=data.get("emit_s"), backends=data.get("backends", {}),
                   accepted_per_teacher_hour=data.get("accepted_per_teacher_hour", {}),
                   gpu_hours=data.get("gpu_hours"))


# Accounting figures that are ratios of others: a merged run recomputes them from its sums.
# Every other number in a backend's `summary()` adds up across the parts of a sharded run
# (counts, tokens, seconds in use: parts run side by side, so `wall_s` becomes backend-seconds).
DERIVED = {  # name -> (from the summed figures, digits kept as the backends round it)
    "completion_tokens_per_s": (lambda a: a["completion_tokens"] / a["wall_s"] if a.get("wall_s") else None, 2),
    "calls_per_teacher_hour": (lambda a: a["calls"] * 3600 / a["wall_s"] if a.get("wall_s") else None, 1),
}
WEIGHTED = {"mean_latency_s": "http_requests"}  # a mean over requests: weighted by each part's requests


def merge_backend_accounting(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The `run.backends` of a sharded run from its parts' (role -> a backend's `summary()`)."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for role, acc in part.items():
            into = merged.setdefault(role, {})
            for key, value in acc.items():
                if key in DERIVED or key in WEIGHTED:
                    continue
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    into[key] = into.get(key, 0) + value
                else:
                    into.setdefault(key, value)  # a label (a model name): the same in every part
            for key, weight in WEIGHTED.items():
                if isinstance(acc.get(key), (int, float)) and acc.get(weight):
                    into.setdefault(f"_{key}", 0.0)
                    into[f"_{key}"] += acc[key] * acc[weight]
    for role, into in merged.items():
        for key, weight in WEIGHTED.items():
            total = into.pop(f"_{key}", None)
            if total is not None:
                into[key] = round(total / into[weight], 3)
        for key, (rule, digits) in DERIVED.items():
            if any(key in part.get(role, {}) for part in parts):
                value = rule(into)
                into[key] = round(value, digits) if value is not None else None
        for key in into:
            if isinstance(into[key], float) and key not in DERIVED and key not in WEIGHTED:
                into[key] = round(into[key], 3)
    return merged


class CheckerScores:
    """Mean checker accuracy and score of initial vs improved images, where both were scored.

    Filled while emit reads the outcomes (`observe` passes them through), so no second read."""

    NAMES = ("initial_accuracy", "improved_accuracy", "initial_score", "improved_score")

    def __init__(self):
        self.samples = 0
        self._sums = dict.fromkeys(self.NAMES, 0.0)

    def observe(self, outcomes: Iterable[Outcome]) -> Iterator[Outcome]:
        for outcome in outcomes:
            initial, improved = outcome.fields.get("initial_score"), outcome.fields.get("improved_score")
            if isinstance(initial, dict) and isinstance(improved, dict):
                self.add(1, {"initial_accuracy": initial["accuracy"], "improved_accuracy": improved["accuracy"],
                             "initial_score": initial["score"], "improved_score": improved["score"]})
            yield outcome

    def add(self, samples: int, means: dict[str, float]) -> None:
        """Add `samples` samples whose mean values these are (one sample: its own values)."""
        self.samples += samples
        for name in self.NAMES:
            self._sums[name] += means[name] * samples

    def to_json(self) -> dict | None:
        if not self.samples:
            return None
        return {"samples": self.samples, **{k: v / self.samples for k, v in self._sums.items()}}


@dataclass
class Manifest:
    recipe: str
    shard: dict[str, Any]
    modes: dict[str, ModeSummary]
    backends: dict[str, Any]
    checker: dict[str, Any] | None
    run: RunAccount
    config: dict[str, Any]
    quality: dict[str, Any] | None = None  # quality_figures.QualitySummary: score histograms, checks per mode
    pipeline_version: str = __version__
    schema_version: int = field(default_factory=schema.schema_version)
    versions: dict[str, str] = field(default_factory=lambda: {"python": platform.python_version(),
                                                               **package_versions()})

    def to_json(self) -> dict:
        return {"recipe": self.recipe, "pipeline_version": self.pipeline_version,
                "schema_version": self.schema_version, "shard": self.shard,
                "modes": {m: s.to_json() for m, s in self.modes.items()}, "backends": self.backends,
                "checker": self.checker, **({"quality": self.quality} if self.quality else {}),
                "run": self.run.to_json(), "versions": self.versions, "config": self.config}

    @classmethod
    def from_json(cls, data: dict) -> "Manifest":
        return cls(recipe=data["recipe"], shard=data["shard"],
                   modes={m: ModeSummary.from_json(m, s) for m, s in data["modes"].items()},
                   backends=data["backends"], checker=data.get("checker"), run=RunAccount.from_json(data["run"]),
                   config=data["config"], quality=data.get("quality"), pipeline_version=data["pipeline_version"],
                   schema_version=data["schema_version"], versions=data["versions"])


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def for_run(cfg: DictConfig, summaries: list[ModeSummary], identities: dict, run: RunAccount,
            checker: CheckerScores, quality: dict[str, Any] | None = None) -> Manifest:
    run.rate_accepted(summaries)
    return Manifest(recipe=cfg.recipe.name, shard={"index": cfg.shard, "count": cfg.num_shards},
                    modes={s.mode: s for s in summaries}, backends=identities, checker=checker.to_json(), run=run,
                    config=redact(cfg), quality=quality)


def write(out: Path, doc: Manifest) -> None:
    write_atomic(out / FILENAME, json.dumps(doc.to_json(), indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def read(out: Path) -> dict:
    """The manifest as JSON (readers that check a folder: a broken file must not raise here)."""
    return json.loads((Path(out) / FILENAME).read_text())


def load(out: Path) -> Manifest:
    return Manifest.from_json(read(out))
