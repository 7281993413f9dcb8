"""A throwaway MLflow tracking server on this machine's loopback interface, for the
benchmarks and the tests of the server backend.

``mlflow_server(folder)`` starts ``mlflow server`` on a free port of 127.0.0.1 with its own
SQLite backend and proxied artifact folder under ``folder`` (``--serve-artifacts``), waits
for its health endpoint and yields its URL; on exit it stops the server's process group by
the server's pid (the server runs its web and job workers as children).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import requests

LOOPBACK = "127.0.0.1"
START_SECONDS = 120.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def server_command(folder: Path, port: int) -> list[str]:
    """``mlflow server`` bound to 127.0.0.1:``port``, its stores under ``folder``."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder / 'backend.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}: see {log}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"mlflow server at {url} was not healthy after {START_SECONDS:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (its own: start_new_session below), then, a
    few seconds on, SIGKILL to what is left of it (its job-runner children may linger)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=3)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """Run an MLflow tracking server with its stores under ``folder``; yield its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "server.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log.open("w") as out:
        process = subprocess.Popen(
            server_command(folder, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://{LOOPBACK}:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        _stop(process)
