"""`recipe=all` through `teacher=vllm_server` against a deterministic server: the same bytes however the
run goes — twice, through 20% transport faults, killed with kill -9 and resumed. Whole files are
compared (lineage included): nothing per-run may reach a shard."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import build
from tests.support.aio_server import ServerThread
from tests.support.fake_openai import FakeOpenAI
from tests.support.fault_proxy import FaultProxy, Garbled, Hang, MalformedJSON, Reset, Status, at_rate
from tests.teacher.helpers import rows, server_teacher, shard_bytes

REPO = Path(__file__).resolve().parents[2]
SMALL = ["recipe=all", "n=8", "image_size=64"]
MODES = ("initial_thinking_generation_learning", "improving_full_learning")
TRANSPORT_FAULTS = [Status(429, retry_after=0.01), Status(500), Status(503), Hang(3.0), Reset(), MalformedJSON(),
                    Garbled()]


def test_two_same_seed_runs_write_the_same_bytes(tmp_path, fake):
    endpoint, url = fake
    first = build(tmp_path, *SMALL, *server_teacher(url), out="a", cache="cache-a")
    second = build(tmp_path, *SMALL, *server_teacher(url), out="b", cache="cache-b")
    assert shard_bytes(first) == shard_bytes(second)
    assert endpoint.requests > 0 and all(rows(first, mode) for mode in MODES)  # the teacher wrote these rows


def test_a_run_through_20_percent_transport_faults_writes_the_same_bytes(tmp_path, fake):
    _, url = fake
    clean = build(tmp_path, *SMALL, *server_teacher(url), out="clean", cache="clean-cache")
    with FaultProxy(url, at_rate(0.2, TRANSPORT_FAULTS)) as proxy:
        faulted = build(tmp_path, *SMALL, *server_teacher(proxy.url, timeout_s=1.0, max_attempts=8),
                        out="faulted", cache="faulted-cache")
    chats = [name for call, name in proxy.log if call.path.endswith("/chat/completions")]
    assert 0.1 < sum(name != "pass" for name in chats) / len(chats) < 0.35  # about one attempt in five failed
    assert len(set(proxy.faults())) >= 3  # several kinds (the draw is a hash of each request: the same every run)
    assert shard_bytes(faulted) == shard_bytes(clean)


def test_killed_with_kill_9_and_resumed_writes_the_same_bytes(tmp_path):
    # A slow server (0.3 s an answer, two in flight) so that the kills land mid-run.
    endpoint = FakeOpenAI(latency_s=0.3)
    with ServerThread(endpoint.protocol) as server:
        teacher = [*server_teacher(server.url), "teacher.concurrency=2", "run.progress_interval_s=60"]
        expected = shard_bytes(build(tmp_path / "ref", *SMALL, *teacher))

        command = [sys.executable, "-m", "curation.run", *SMALL, *teacher,
                   f"out={tmp_path / 'killed' / 'ds'}", f"cache={tmp_path / 'killed' / 'cache'}"]
        rng = random.Random(9)
        killed = 0
        for _ in range(3):
            proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            time.sleep(rng.uniform(2.0, 5.0))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                killed += 1
            proc.wait()
        assert killed >= 1, "the run finished before any kill; slow the server down"
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=300)
    assert shard_bytes(tmp_path / "killed" / "ds") == expected
