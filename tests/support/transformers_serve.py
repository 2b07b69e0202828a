"""Start `transformers serve <model dir>` on 127.0.0.1 for a test, wait until it answers, always stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def transformers_serve(model_dir: Path, *, ready_timeout_s: float = 240.0) -> Iterator[str]:
    """Yields the server's base URL (`http://127.0.0.1:PORT`, without /v1)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = tempfile.TemporaryFile()
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model_dir),
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "error"]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"transformers serve did not answer within {ready_timeout_s:g} s:\n{_tail(log)}")
            time.sleep(0.25)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and anything it spawned
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def _tail(log, chars: int = 3000) -> str:
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-chars:]
