"""Start the real SageMaker Hugging Face inference server (Multi Model Server) on 127.0.0.1.

The toolkit's own `serving.main()` starts it, exactly as in the inference container;
only its fixed config-file path is redirected to a temporary file. Used by the server
tests and by the load benchmark.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from multilabel.serving import serve
from multilabel.serving.serve import server_environment


def free_port() -> int:
    """A free port below 10000: Multi Model Server rejects five-digit ports."""
    for port in random.sample(range(8100, 9999), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8100-9999")


def post_with_headers(
    url: str, body: bytes, content_type: str, accept: str | None = None, timeout: float = 60
) -> tuple[int, dict[str, str], bytes]:
    """POST and return (status, response headers with lower-case names, body) for any status."""
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def post(
    url: str, body: bytes, content_type: str, accept: str | None = None, timeout: float = 60
) -> tuple[int, bytes]:
    """POST and return (status, body) for any status."""
    status, _, payload = post_with_headers(url, body, content_type, accept, timeout)
    return status, payload


class ModelServer:
    """One model server process group serving `model_dir` (with its code/)."""

    def __init__(self, model_dir: Path, workdir: Path, env: dict[str, str] | None = None):
        self.base = workdir / "opt-ml"
        shutil.copytree(model_dir, self.base / "model")
        self.port, self.management_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        (workdir / "tmp").mkdir()
        self.env = server_environment(self.base, self.port, self.management_port, workdir / "tmp", env)
        self.config_file = workdir / "mms.properties"
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    def start(self, probe: bytes, timeout: float = 240) -> None:
        """Start, and wait until an invocation succeeds (the worker loads after /ping is up)."""
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(
            [sys.executable, "-c", serve.LAUNCHER, str(self.config_file)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"model server exited: {self.log_tail()}")
            try:
                status, _ = post(f"{self.url}/invocations", probe, "application/json", timeout=10)
                if status == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"model server did not answer within {timeout}s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def wait_for_log(self, *lines: str, count: int = 1, timeout: float = 30) -> str:
        """The whole log, once it holds every one of `lines`, each at least `count` times.

        A worker's output reaches the log through the frontend a moment after the response;
        waiting for what the test expects, not a fixed pause, holds on a slow machine too.
        """
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_tail(10**8)
            missing = [line for line in lines if log.count(line) < count]
            if not missing:
                return log
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not {count} time(s) in the model server's log after {timeout}s: {missing}\n{log[-4000:]}"
                )
            time.sleep(0.1)
