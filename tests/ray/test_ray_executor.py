"""`executor=ray` on a local Ray: same bytes as the local executor, and it survives deaths.

One Ray session for the module (starting Ray costs seconds on 2 cores), declared with 2 CPUs and
2 logical GPUs, so walker actors asking for `num_gpus_per_actor=1` are placed by GPU.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

import curation.run as run_module
from curation.backends.base import BackendUnavailable
from curation.backends.factory import build_backend, build_backends
from curation.backends.http import ServerGone
from curation.pipeline.executor import GATES
from curation.pipeline.gates import GateSettings
from curation.pipeline.plan import build_plan
from curation.pipeline.ray_executor import RayExecutor, RaySettings
from curation.core import schema
from curation.core.config import load_config
from curation.core.progress import Progress
from curation.writer import manifest
from tests.helpers import FAST, build, shard_digests
from tests.support.aio_server import ServerThread
from tests.support.fake_openai import MODEL, FakeOpenAI, serve
from tests.support.fault_proxy import DiesAfter, FaultProxy
from tests.teacher.helpers import assert_each_sample_once, rows, server_teacher

REPO = Path(__file__).resolve().parents[2]
RECIPE = ["recipe=all", "n=12"]
ON_RAY = ["executor=ray", "executor.num_gpus_per_actor=1", "executor.batch_size=2"]


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    return build(tmp, *RECIPE)


def _accounted_once(out: Path) -> None:
    """Every sourced sample is one accepted row or one reject row, per mode."""
    rejects = pq.read_table(out / "rejects" / "rejects.parquet").to_pylist()
    doc = manifest.read(out)
    for mode in schema.MODE_KEYS:
        ids = [i for p in sorted((out / "data" / mode).glob("*.parquet"))
               for i in pq.read_table(p, columns=["sample_id"]).column("sample_id").to_pylist()]
        rejected = [r["sample_id"] for r in rejects if r["mode"] == mode]
        assert len(ids) == len(set(ids)) and not set(ids) & set(rejected)
        assert len(ids) + len(rejected) == doc["modes"][mode]["sourced"] == 12


def test_ray_writes_the_local_executors_bytes(ray_session, local_reference, tmp_path):
    out = build(tmp_path, *RECIPE, *ON_RAY)
    assert shard_digests(out) == shard_digests(local_reference)
    _accounted_once(out)
    again = build(tmp_path, *RECIPE, *ON_RAY)  # finished: nothing to call
    assert manifest.read(again)["run"]["backend_calls"] == {}
    assert shard_digests(again) == shard_digests(local_reference)


def _walker_pids() -> list[int]:
    """Processes of live walker actors (Ray titles them after the map operator)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"MapBatches(WalkerActor)" in cmdline and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


def _outcomes(cache: Path) -> int:
    return sum(1 for _ in (cache / "outcomes").rglob("*.json")) if (cache / "outcomes").exists() else 0


def test_a_killed_actor_is_replaced_and_every_sample_is_accounted_once(ray_session, local_reference, tmp_path):
    # One actor: the run can only finish if Ray starts another in place of the killed one.
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "out", build(tmp_path, *RECIPE, *ON_RAY, "executor.actors=1")))
    thread.start()
    deadline = time.monotonic() + 120
    while _outcomes(tmp_path / "cache") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = set(_walker_pids())
    assert len(before) == 1 and thread.is_alive(), "no walker actor to kill mid-run"
    os.kill(before.pop(), signal.SIGKILL)
    replacements: set[int] = set()
    while thread.is_alive() and not replacements:
        replacements = set(_walker_pids()) - before
        time.sleep(0.05)
    thread.join(timeout=300)
    assert replacements, "Ray did not start a walker in place of the killed one"
    assert not thread.is_alive() and "out" in result, "the run did not finish after an actor was killed"
    assert _outcomes(tmp_path / "cache") == 12
    assert shard_digests(result["out"]) == shard_digests(local_reference)
    _accounted_once(result["out"])


def test_driver_killed_then_restarted_resumes_byte_identical(ray_session, local_reference, tmp_path):
    command = [sys.executable, "-m", "curation.run", *RECIPE, *FAST, *ON_RAY, f"executor.address={ray_session}",
               f"out={tmp_path / 'ds'}", f"cache={tmp_path / 'cache'}"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while _outcomes(tmp_path / "cache") < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before the kill; lengthen it"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _outcomes(tmp_path / "cache")
    assert 0 < done_before < 12
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert shard_digests(tmp_path / "ds") == shard_digests(local_reference)
    calls = manifest.read(tmp_path / "ds")["run"]["backend_calls"]
    assert calls.get("initial_thinking", 0) <= 12 - done_before + 4  # the finished work was not redone
    _accounted_once(tmp_path / "ds")


def test_walker_actors_are_placed_by_gpu(ray_session, tmp_path):
    """Each actor asking for one GPU gets one of the two declared, never the same one."""
    cfg = load_config("config", [*FAST, "recipe=initial_thinking", "n=8", "executor=ray",
                                 "executor.num_gpus_per_actor=1", "executor.batch_size=1",
                                 f"cache={tmp_path / 'cache'}"])
    source = build_backend("source", cfg.source)
    plan = build_plan(dict(cfg.recipe.modes), source_provides_images=source.provides_images)
    gates = GateSettings.from_config(cfg.gates)
    executor = RayExecutor(
        plan, make_backends=functools.partial(build_backends, cfg, plan.roles),
        read_samples=functools.partial(run_module._gated_samples, cfg, plan.n_source, gates,
                                       run_module.ranks_by_score(plan)),
        store_url=str(tmp_path / "cache"), run_seed=0, run_key="placement", stage_settings=plan.settings,
        progress=Progress([GATES, *(s.name for s in plan.stages)], interval=3600),
        settings=RaySettings.from_config(cfg.executor))
    result = executor.run()
    assert result.sample_ids and len(result.sample_ids) == result.stats.samples == 8
    gpus = [actor.split("gpus ")[1] for actor in result.actors]
    assert all(g in ("[0]", "[1]") for g in gpus) and len(set(gpus)) == len(gpus)


def test_a_backend_that_cannot_run_is_one_sentence_from_the_actors(ray_session, tmp_path):
    """The walker actors run the backends' start-up checks; the driver reports their sentence."""
    with pytest.raises(BackendUnavailable, match="no server answers at http://127.0.0.1:9/v1") as caught:
        build(tmp_path, "recipe=initial_thinking", "n=2", "executor=ray", "teacher=vllm_server",
              "teacher.base_url=http://127.0.0.1:9/v1", "teacher.check_timeout_s=2")
    assert "\n" not in str(caught.value) and "DataContext" not in str(caught.value)  # Ray Data's advice is not ours


class _CountingEndpoint(FakeOpenAI):
    """The fake teacher server, counting the chat requests it holds at once."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.open = self.peak = 0

    def answer(self, method, path, headers, body):
        status, data = super().answer(method, path, headers, body)
        if data.get("object") == "chat.completion":
            self.open += 1
            self.peak = max(self.peak, self.open)
        return status, data

    def protocol(self):
        endpoint = self

        class Counting(type(super().protocol())):
            def _respond(self, status, data, close):
                if data.get("object") == "chat.completion":
                    endpoint.open -= 1
                super()._respond(status, data, close)

        return Counting(self)


def test_http_backends_keep_the_runs_limit_across_actors(ray_session, tmp_path):
    """teacher.concurrency is the limit the server sees, whatever the number of actors."""
    endpoint = _CountingEndpoint(latency_s=0.3, inspect_images=False)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(serve(endpoint))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        port = server.sockets[0].getsockname()[1]
        out = build(tmp_path, "recipe=initial_thinking", "n=24", "executor=ray", "executor.batch_size=4",
                    "teacher=vllm_server", f"teacher.base_url=http://127.0.0.1:{port}/v1", f"teacher.model={MODEL}",
                    "teacher.concurrency=4")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
    calls = manifest.read(out)["run"]["backend_calls"]["initial_thinking"]
    assert endpoint.requests == calls > 8
    assert 3 <= endpoint.peak <= 4  # two actors, two each: the run's 4, not 4 per actor


def test_a_server_gone_under_ray_stops_the_run_with_its_own_error_and_the_same_command_resumes(ray_session,
                                                                                             tmp_path):
    """A teacher server that dies mid-run stops a Ray run as it stops a local one: the actor's
    `ServerGone` (not Ray's wrapper), no dataset, no sample rejected for the death; the same command
    against the server back up computes only what is missing."""
    run = ["recipe=initial_thinking", "n=6", "image_size=64", "executor=ray", "executor.batch_size=2",
           "teacher.concurrency=2"]
    with ServerThread(FakeOpenAI().protocol) as server:
        with FaultProxy(server.url, DiesAfter(2)) as proxy:
            with pytest.raises(ServerGone) as caught:
                build(tmp_path, *run, *server_teacher(proxy.url, max_attempts=2))
        message = str(caught.value)
        assert "stopped answering" in message and "\n" not in message
        assert not (tmp_path / "ds" / "manifest.json").exists() and not (tmp_path / "ds" / "data").exists()

        out = build(tmp_path, *run, *server_teacher(server.url))
    mode = "initial_thinking_generation_learning"
    # Every sample accepted: had the death been stored as a reject, the resumed run would reuse it.
    assert_each_sample_once(out, mode, 6) and len(rows(out, mode)) == 6
    assert manifest.read(out)["run"]["backend_calls"]["initial_thinking"] < 6  # what was answered is kept
