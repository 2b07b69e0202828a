"""`python -m curation.run recipe=<name> [overrides]`: build a dataset, resumably.

The flow, top to bottom: compose the config → build and check the backends (fail fast) → plan
the stages the recipe's modes need → stream the source through the gates (this process's shard
only) into the executor, which runs the stages and leaves one outcome per sample in the store →
emit: one pass over the outcomes into every mode's shards, then rejects, manifest and card.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from curation.backends.base import Backend, BackendUnavailable, Source
from curation.backends.factory import build_backend, build_backends, configured_roles, distinct
from curation.pipeline.dedup_pass import KEYS_FILE, duplicates_of, keys_frame, write_keys
from curation.pipeline.executor import Executor, RunStats, SampleWalker
from curation.pipeline.gates import Gates, GateSettings
from curation.pipeline.plan import Plan, PlanError, build_plan, plan_key
from curation.pipeline.samples import GATES, read_samples
from curation.pipeline.shared_store import is_url, open_store
from curation.pipeline.store import Store
from curation.core.cli import command
from curation.core.config import ConfigError
from curation.core.logs import EventLog
from curation.core.progress import Progress
from curation.core.records import Sample
from curation.core.schema import SchemaError
from curation.monitor import Live
from curation.writer import gpu_hours, manifest
from curation.writer.dataset import DatasetWriter, publish_manifest
from curation.writer.emit import EmitPlan, EmitSettings, emit_outcomes
from curation.writer.manifest import CheckerScores, Manifest, RunAccount
from curation.writer.quality_figures import CHECKS as QUALITY_CHECKS
from curation.writer.quality_figures import QualitySummary

__all__ = ["build_backend", "main", "run"]

USAGE = """usage: python -m curation.run recipe=<mode key | short name | all> [key=value ...]
  e.g. python -m curation.run recipe=improving_full n=100 out=outputs/demo
       python -m curation.run recipe=all teacher=vllm_server teacher.base_url=http://host:8000/v1
  knobs: n seed image_size out cache shard num_shards teacher= generator= source= reference= checker= scorer=
  watch it: run.live=true or run.live_port=N (live page and /metrics on 127.0.0.1), run.log_format=jsonl
  see recipes/config.yaml for every knob and README.md for the backends."""


def output_dir(cfg: DictConfig) -> Path:
    out = Path(cfg.out)
    if cfg.num_shards > 1:
        out = out / "parts" / f"part-{cfg.shard:05d}-of-{cfg.num_shards:05d}"
    return out


def writable_dir(path: Path, knob: str) -> Path:
    """Create `path` (a folder the run writes to) now, or say in one sentence why it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{knob}={path} cannot be created: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{knob}={path} is not writable by this user")
    return path


def run(cfg: DictConfig) -> Path:
    started = time.monotonic()
    if not 0 <= cfg.shard < cfg.num_shards:
        raise ConfigError(f"shard={cfg.shard} must be in [0, num_shards={cfg.num_shards})")
    out = output_dir(cfg)
    gate_settings = GateSettings.from_config(cfg.gates)
    source: Source = build_backend("source", cfg.source)
    plan = build_plan(dict(cfg.recipe.modes), source_provides_images=source.provides_images,
                      improving_initial_thinking=cfg.improving_initial_thinking,
                      settings=OmegaConf.to_container(cfg.get("stages") or {}, resolve=True),
                      roles=configured_roles(cfg))
    backends = build_backends(cfg, plan.roles)
    # Before any work: one clear sentence if a backend cannot run. On Ray each walker actor runs
    # these checks itself where the models will live (loading one here would only waste the GPU).
    for backend in (source, *(distinct(backends, plan.roles).values() if cfg.executor.name == "local" else ())):
        backend.check()
    identities = {"source": source.identity(), **{r: b.identity() for r, b in backends.items()}}
    stage_settings = plan.settings
    key = plan_key(plan, identities, cfg.seed, {"stages": stage_settings, "gates": OmegaConf.to_container(cfg.gates)})
    # Outcomes are kept per shard: processes building other parts may share this store.
    run_key = hashlib.sha256(f"{key}:{cfg.shard}/{cfg.num_shards}".encode()).hexdigest()[:32]

    writable_dir(out, "out")  # after the backends' checks: a run that cannot start leaves nothing behind
    cache = str(cfg.cache) if is_url(str(cfg.cache)) else writable_dir(Path(cfg.cache), "cache")
    store = open_store(cache, cfg.executor.store)
    log = EventLog(cfg.run.log_format)
    log.say(f"recipe {cfg.recipe.name}: shard {cfg.shard} of {cfg.num_shards}, output {out}", "run_started",
            recipe=cfg.recipe.name, shard=cfg.shard, num_shards=cfg.num_shards, out=str(out),
            executor=cfg.executor.name)
    log.say(plan.describe(), "plan", modes=plan.modes, stages={m: list(s) for m, s in plan.mode_stages.items()})
    live, finished = None, False
    try:
        store.clear_outcomes(run_key)  # every sample is walked again (reading the store): no stale outcome
        progress = make_progress(plan, cfg)
        live = Live.from_config(cfg, plan, progress, identities, store, log,
                                summaries=lambda: {role: acc for role, b in backends.items() if (acc := b.summary())})
        if cfg.executor.name == "ray":
            stats, accounting = walk_on_ray(cfg, plan, gate_settings, str(cache), run_key, stage_settings, progress,
                                            live)
        else:
            gates = Gates(gate_settings, store, scored=ranks_by_score(plan))
            samples = read_samples(source, gates, plan.n_source, shard=cfg.shard, num_shards=cfg.num_shards,
                                   workers=cfg.gates_workers, progress=progress)
            walker = SampleWalker(plan, backends, store, run_seed=cfg.seed, run_key=run_key,
                                  stage_settings=stage_settings, progress=progress,
                                  observer=live.state if live else None)
            if live:
                live.state.in_flight = lambda: walker.in_flight
            owned = distinct(backends, plan.roles)
            executor = Executor(walker, max_in_flight=cfg.run.max_in_flight, throttle_s=cfg.run.throttle_s)
            stats = asyncio.run(_run_and_close(executor, samples, owned))
            accounting = {role: b.summary() for role, b in owned.items() if b.summary()}
        if live:
            live.state.set_phase("emitting")
        doc = publish(out, plan, store, run_key, identities, cfg, stats, accounting, started)
        if live:
            live.finish(doc.to_json())
        finished = True
    finally:
        store.close()
        if live:
            live.close(log, finished=finished)
    print_summary(out, doc, stats, log)
    return out


def make_progress(plan: Plan, cfg: DictConfig) -> Progress:
    """One line per stage. Totals are known when one process reads the whole source (a mode
    with count k takes the first k rows, so a stage's total is the largest count of the modes that
    need it); a shard sees an unknown share of the rows, so it shows rates only."""
    progress = Progress([GATES, *(s.name for s in plan.stages)], interval=cfg.run.progress_interval_s,
                        fmt=cfg.run.log_format)
    if cfg.num_shards == 1:
        progress.set_total(GATES, plan.n_source)
        for stage in plan.stages:
            users = [c for m, c in plan.modes.items() if stage.name in plan.mode_stages[m]]
            progress.set_total(stage.name, max(users) if users else plan.n_source)
    return progress


def walk_on_ray(cfg: DictConfig, plan: Plan, gate_settings: GateSettings, store_url: str, run_key: str,
                stage_settings: dict, progress: Progress, live: Live | None = None) -> tuple[RunStats, dict]:
    """`executor=ray`: the same walk on Ray Data (curation/pipeline/ray_executor.py); needs the ray extra."""
    from curation.pipeline.ray_executor import RayExecutor, RaySettings

    executor = RayExecutor(plan, make_backends=functools.partial(build_backends, cfg, plan.roles),
                           read_samples=functools.partial(_gated_samples, cfg, plan.n_source, gate_settings,
                                                                ranks_by_score(plan)),
                           store_url=store_url, run_seed=cfg.seed, run_key=run_key, stage_settings=stage_settings,
                           progress=progress, settings=RaySettings.from_config(cfg.executor))
    if live:  # the driver serves the page: stage counts and the actors' accounting as they report
        live.state.summaries = executor.accounting
    result = executor.run()
    return result.stats, result.accounting


def ranks_by_score(plan: Plan) -> bool:
    """A scorer runs after the gates, so a score it measures may rank same-size duplicate copies: the
    streaming gate then cannot be sure which copy the end-of-run pass keeps (pipeline/dedup.py)."""
    return any(stage.role == "scorer" for stage in plan.stages)


def _gated_samples(cfg: DictConfig, limit: int, gate_settings: GateSettings, scored: bool, store) -> Iterator[Sample]:
    """This shard's samples through the gates, for Ray's read task (which has no progress lines)."""
    return read_samples(build_backend("source", cfg.source), Gates(gate_settings, store, scored=scored), limit,
                        shard=cfg.shard, num_shards=cfg.num_shards, workers=cfg.gates_workers)


async def _run_and_close(executor: Executor, samples, backends: dict[str, Backend]) -> RunStats:
    try:
        return await executor.run(samples)
    finally:
        for backend in backends.values():
            await backend.aclose()


def publish(out: Path, plan: Plan, store: Store, run_key: str, identities: dict, cfg: DictConfig, stats: RunStats,
            accounting: dict, started: float) -> Manifest:
    """Emit every outcome once into the dataset's shards and rejects, then manifest and card."""
    walk_s = time.monotonic() - started
    stored = store.count_outcomes(run_key)
    if stored != stats.samples:  # another process wrote under this run's key meanwhile
        raise RuntimeError(f"the store holds {stored} outcomes for this run but it walked {stats.samples} samples: "
                           f"is the same shard running twice on this cache?")
    emit_plan = EmitPlan(modes=plan.modes, mode_stages=plan.mode_stages,
                         role_of={s.name: s.role for s in plan.stages}, identities=identities)
    writer = DatasetWriter(out, plan.mode_stages, EmitSettings(**OmegaConf.to_container(cfg.emit)),
                           staging_name=f".staging-{run_key[:8]}")
    keys, embeddings = keys_frame(store.iter_dedup_keys(run_key))
    if cfg.num_shards > 1:  # curation.merge finds the duplicates across parts from every part's keys
        write_keys(out / KEYS_FILE, keys, embeddings)
    duplicates = duplicates_of(keys, embeddings, GateSettings.from_config(cfg.gates))
    checker = CheckerScores()
    quality = QualitySummary(plan.modes, plan.mode_stages, {s: plan.settings.get(s, {}) for s in QUALITY_CHECKS})
    emit_started = time.monotonic()  # after the writers exist (loading the schemas imports `datasets`)
    outcomes = quality.observe(checker.observe(store.iter_outcomes(run_key)))
    emit_outcomes(outcomes, emit_plan, writer, store.image_bytes, duplicates)
    summaries = writer.finish()
    now = time.monotonic()
    account = RunAccount(backend_calls=stats.computed, cached=stats.cached, rejected=stats.rejected,
                         elapsed_s=now - started, emit_s=now - emit_started, backends=accounting,
                         first_result_s=None if stats.first_result_at is None else stats.first_result_at - started)
    calls: dict[str, int] = {}
    for stage in plan.stages:
        if stage.role:
            calls[stage.role] = calls.get(stage.role, 0) + stats.computed.get(stage.name, 0)
    account.gpu_hours = gpu_hours.measure(
        gpu_hours.roles_from_config(cfg, identities), accounting=accounting, calls=calls, elapsed_s=now - started,
        walk_s=walk_s, accepted=sum(s.accepted for s in summaries), requested=sum(plan.modes.values()),
        server_share=float(cfg.cost.server_share),
        simulated_gpu_s_per_call=dict(cfg.cost.simulated_gpu_s_per_call or {}))
    doc = manifest.for_run(cfg, summaries, identities, account, checker, quality.to_json())
    publish_manifest(out, doc)
    return doc


def print_summary(out: Path, doc: Manifest, stats: RunStats, log: EventLog | None = None) -> None:
    if log is not None and log.fmt == "jsonl":
        run = doc.run.to_json()
        log.say("", "run_finished", out=str(out.resolve()), modes={m: {"sourced": s.sourced, "accepted": s.accepted, "rejected": s.rejected,
                                                           "rejects_by_reason": s.rejects_by_reason}
                                                       for m, s in doc.modes.items()},
                backend_calls=run["backend_calls"], elapsed_s=run["elapsed_s"], backends=run.get("backends", {}),
                gpu_hours=run.get("gpu_hours"))
        return
    print(f"\ndataset written to {out.resolve()}", file=sys.stderr)
    for s in doc.modes.values():
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(s.rejects_by_reason.items())) or "none"
        print(f"  {s.mode}: sourced {s.sourced} = accepted {s.accepted} + rejected {s.rejected} ({reasons})",
              file=sys.stderr)
    print(f"  backend calls this run: {stats.backend_calls} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(stats.computed.items())) or 'all results were in the store'})",
          file=sys.stderr)
    for role, acc in doc.run.backends.items():
        print(f"  {role}: " + ", ".join(f"{k} {v}" for k, v in acc.items() if v is not None), file=sys.stderr)
    for mode, rate in doc.run.accepted_per_teacher_hour.items():
        print(f"  {mode}: {rate:.0f} accepted samples per teacher-hour", file=sys.stderr)
    total = (doc.run.gpu_hours or {}).get("total") or {}
    if total.get("per_1k_accepted") is not None:
        print(f"  GPU-hours per 1,000 accepted rows: {total['per_1k_accepted']:.3f} ({total['basis']}; "
              f"projected for the requested rows: {total['projected_gpu_hours']:.1f}; see the card's Cost section)",
              file=sys.stderr)
    print(f"  load with: datasets.load_dataset({str(out)!r}, {next(iter(doc.modes))!r})", file=sys.stderr)


#: From the command line: each of these is one sentence and exit status 2 (curation/core/cli.py).
main = command("config", USAGE, errors=(BackendUnavailable, PlanError, SchemaError))(run)


if __name__ == "__main__":
    main()
