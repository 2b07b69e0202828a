"""`python -m curation.run recipe=<name> [overrides]`: build a dataset, resumably.

The flow, top to bottom: compose the config → build and check the backends (fail fast) → plan
the stages the recipe's modes need → read the source through the gates (this process's shard
only) → run the stages (executor, store) → emit shards, rejects, manifest and card.
"""

from __future__ import annotations

import asyncio
import functools
import io
import hashlib
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from hydra.errors import HydraException, InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from curation.publish import card, emit, manifest
from curation.backends.base import Backend, BackendUnavailable, Source
from curation.core.config import ConfigError, load_config, wants_help
from curation.build.executor import Executor, RunStats
from curation.build.gates import STAGE as GATES
from curation.build.gates import Gates, GateSettings
from curation.build.plan import Plan, PlanError, build_plan, plan_key
from curation.core.schema import SchemaError
from curation.core.progress import Progress
from curation.core.records import Reject, Sample
from curation.build.shared_store import open_store

log = logging.getLogger("curation.run")

USAGE = """usage: python -m curation.run recipe=<mode key | short name | all> [key=value ...]
  e.g. python -m curation.run recipe=improving_full n=100 out=outputs/demo
       python -m curation.run recipe=all teacher=vllm_server teacher.base_url=http://host:8000/v1
  knobs: n seed image_size out cache shard num_shards teacher= generator= source= reference= checker=
  see recipes/config.yaml for every knob and README.md for the backends."""


def sample_id_for(source_identity: dict, source_id: str) -> str:
    return hashlib.sha256(f"{source_identity['id']}\0{source_id}".encode()).hexdigest()[:16]


def in_shard(sample_id: str, shard: int, num_shards: int) -> bool:
    return int(sample_id, 16) % num_shards == shard


def output_dir(cfg: DictConfig) -> Path:
    out = Path(cfg.out)
    if cfg.num_shards > 1:
        out = out / "parts" / f"part-{cfg.shard:05d}-of-{cfg.num_shards:05d}"
    return out


def build_backends(cfg: DictConfig, plan: Plan) -> dict[str, Backend]:
    roles = {s.role for s in plan.stages if s.role}
    backends = {}
    for role in sorted(roles):
        node = cfg.get(role)
        if node is None or "_target_" not in node:
            raise BackendUnavailable(f"the plan needs a {role} backend but `{role}=` selects none")
        backends[role] = build_backend(role, node)
    return backends


def build_backend(role: str, node: DictConfig) -> Backend:
    """Instantiate one backend; a failure becomes one sentence naming the role and the cause."""
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as exc:
        cause = exc.__cause__
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, BackendUnavailable):
            raise cause from None
        raise BackendUnavailable(f"could not build the {role} backend {node.get('_target_')}: "
                                 f"{type(cause or exc).__name__}: {cause or exc}") from exc


def read_source(source: Source, gates: Gates, plan: Plan, cfg: DictConfig,
                progress: Progress) -> Iterator[Sample | tuple[Sample, Reject]]:
    identity = source.identity()

    def mine():
        for index, item in enumerate(source.iter_items(plan.n_source)):
            sample_id = sample_id_for(identity, item.source_id)
            if in_shard(sample_id, cfg.shard, cfg.num_shards):
                yield item, sample_id, index
            else:
                progress.update(GATES, skipped=1)  # another shard's row: read, not ours

    for item, sample_id, index, admitted in gates.admit_all(mine(), workers=cfg.gates_workers):
        progress.update(GATES, computed=1, rejected=int(isinstance(admitted, Reject)))
        if isinstance(admitted, Reject):
            yield Sample(sample_id, item.source_id, index, fields={}), admitted
        else:
            yield admitted


def run(cfg: DictConfig) -> Path:
    started = time.time()
    if not 0 <= cfg.shard < cfg.num_shards:
        raise ConfigError(f"shard={cfg.shard} must be in [0, num_shards={cfg.num_shards})")
    out = output_dir(cfg)
    gate_settings = GateSettings.from_config(cfg.gates)
    source: Source = build_backend("source", cfg.source)
    with_checker = cfg.get("checker") is not None and "_target_" in cfg.checker
    plan = build_plan(dict(cfg.recipe.modes), source_provides_images=source.provides_images, with_checker=with_checker,
                      improving_initial_thinking=cfg.improving_initial_thinking)
    backends = build_backends(cfg, plan)
    for backend in (source, *backends.values()):
        backend.check()  # before any work: one clear sentence if a backend cannot run
    identities = {"source": source.identity(), **{r: b.identity() for r, b in backends.items()}}
    stage_settings = OmegaConf.to_container(cfg.stages, resolve=True)
    key = plan_key(plan, identities, cfg.seed, {"stages": stage_settings, "gates": OmegaConf.to_container(cfg.gates)})

    print(f"recipe {cfg.recipe.name}: shard {cfg.shard} of {cfg.num_shards}, output {out}", file=sys.stderr)
    print(plan.describe(), file=sys.stderr)

    store = open_store(cfg.cache, cfg.executor.store)
    if cfg.executor.name == "ray":
        try:
            stats, accounting, sample_ids = _walk_on_ray(cfg, plan, key, stage_settings, gate_settings)
            summaries, doc = write_dataset(out, plan, store, key, sample_ids, identities, cfg, stats, accounting,
                                           time.time() - started)
        finally:
            store.close()
        print_summary(out, summaries, stats, doc)
        return out
    try:
        gates = Gates(gate_settings, store)
        # Reading and gating a large source takes a while too: it gets its own progress line.
        progress = Progress([GATES, *(s.name for s in plan.stages)], interval=cfg.run.progress_interval_s)
        progress.set_total(GATES, plan.n_source)
        samples = list(read_source(source, gates, plan, cfg, progress))
        for stage in plan.stages:
            progress.set_total(stage.name, sum(1 for s in samples if stage in plan.stages_for(_index(s))))
        executor = Executor(plan, backends, store, run_seed=cfg.seed, plan_key=key,
                            stage_settings=stage_settings, progress=progress, max_in_flight=cfg.run.max_in_flight)
        stats = asyncio.run(_run_and_close(executor, samples, backends))
        accounting = {role: b.summary() for role, b in backends.items() if b.summary()}
        sample_ids = [(_sample(s).sample_id) for s in samples]
        summaries, doc = write_dataset(out, plan, store, key, sample_ids, identities, cfg, stats, accounting,
                                       time.time() - started)
    finally:
        store.close()
    print_summary(out, summaries, stats, doc)
    return out


def _walk_on_ray(cfg, plan, key, stage_settings, gate_settings):
    from curation.build.ray_executor import RayExecutor, RaySettings  # the ray extra, only when asked for

    progress = Progress([s.name for s in plan.stages], interval=cfg.run.progress_interval_s)
    executor = RayExecutor(plan, make_backends=functools.partial(build_backends, cfg, plan),
                           read_samples=functools.partial(gated_samples, cfg, plan, gate_settings),
                           store_url=str(cfg.cache), run_seed=cfg.seed, plan_key=key, stage_settings=stage_settings,
                           progress=progress, settings=RaySettings.from_config(cfg.executor))
    result = executor.run()
    return result.stats, result.accounting, result.sample_ids


def gated_samples(cfg, plan, gate_settings, store):
    source = build_backend("source", cfg.source)
    silent = Progress([GATES], interval=float("inf"), stream=io.StringIO())
    return read_source(source, Gates(gate_settings, store), plan, cfg, silent)


def _sample(item: Sample | tuple[Sample, Reject]) -> Sample:
    return item if isinstance(item, Sample) else item[0]


def _index(item) -> int:
    return _sample(item).index


async def _run_and_close(executor: Executor, samples: list, backends: dict[str, Backend]) -> RunStats:
    try:
        return await executor.run(samples)
    finally:
        for backend in backends.values():
            await backend.aclose()


def write_dataset(out: Path, plan: Plan, store: Store, key: str, sample_ids: list[str], identities: dict,
                  cfg: DictConfig, stats: RunStats, accounting: dict, elapsed: float
                  ) -> tuple[list[emit.ModeSummary], dict]:
    staging = out / f".staging-{key[:8]}"
    shutil.rmtree(staging, ignore_errors=True)  # leftovers of an emit that was killed
    settings = emit.EmitSettings(**OmegaConf.to_container(cfg.emit))
    role_of = {s.name: s.role for s in plan.stages}
    rejects: list[dict] = []
    summaries = []
    for mode, count in plan.modes.items():
        outcomes = emit.iter_mode_outcomes(store.iter_outcomes(key, sample_ids), count)
        summaries.append(emit.emit_mode(mode, outcomes, stage_names=plan.mode_stages[mode], identities=identities,
                                        role_of=role_of, image_bytes=store.image_bytes, staging=staging,
                                        settings=settings, rejects_out=rejects))
    for summary in summaries:
        emit.replace_dir(staging / "data" / summary.mode, out / "data" / summary.mode)
    emit.write_rejects(out / "rejects" / "rejects.parquet", rejects)
    scores = manifest.score_summary(store.iter_outcomes(key, sample_ids))
    doc = manifest.build(cfg, plan, summaries, identities, stats, scores, accounting, elapsed)
    manifest.write(out, doc)
    card.write(out, doc)
    shutil.rmtree(staging, ignore_errors=True)
    return summaries, doc


def print_summary(out: Path, summaries: list[emit.ModeSummary], stats: RunStats, doc: dict) -> None:
    print(f"\ndataset written to {out.resolve()}", file=sys.stderr)
    for s in summaries:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(s.rejects_by_reason.items())) or "none"
        print(f"  {s.mode}: sourced {s.sourced} = accepted {s.accepted} + rejected {s.rejected} ({reasons})",
              file=sys.stderr)
    print(f"  backend calls this run: {stats.backend_calls} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(stats.computed.items())) or 'all results were in the store'})",
          file=sys.stderr)
    for role, acc in doc["run"].get("backends", {}).items():
        print(f"  {role}: " + ", ".join(f"{k} {v}" for k, v in acc.items() if v is not None), file=sys.stderr)
    for mode, rate in doc["run"].get("accepted_per_teacher_hour", {}).items():
        print(f"  {mode}: {rate:.0f} accepted samples per teacher-hour", file=sys.stderr)
    print(f"  load with: datasets.load_dataset({str(out)!r}, {summaries[0].mode!r})", file=sys.stderr)


def main(overrides: Sequence[str] | None = None) -> Path:
    """Entry point. Called with `overrides` (from Python, tests) errors propagate as exceptions;
    from the command line a misconfiguration is one sentence and exit status 2, no traceback."""
    argv = list(sys.argv[1:] if overrides is None else overrides)
    if wants_help(argv):
        print(USAGE)
        raise SystemExit(0)
    try:
        return run(load_config("config", argv))
    except (BackendUnavailable, ConfigError, PlanError, SchemaError, HydraException, OmegaConfBaseException) as exc:
        if overrides is not None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
