"""One real `mlflow server` for the tests: 127.0.0.1, a free port, sqlite backend, proxied
artifacts in a temp dir, no job runner, a bounded start, stopped by PID (its process group)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

from finsight.triton.server import free_port, stop_process_group

START_DEADLINE_S = 90  # ~15 s on an idle 2-core box, ~30 s when it is busy


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (the CLI plus its uvicorn child), SIGKILL if it lingers."""
    stop_process_group(proc, term_wait_s=10, kill_wait_s=10)


@contextlib.contextmanager
def mlflow_server(root: Path, *, while_starting=None) -> Iterator[SimpleNamespace]:
    """Start a server under ``root``; yields (url, root, artifacts, log) once /health answers.

    ``while_starting`` runs while the server boots (e.g. warming heavy imports).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    # No job runner: it forks seven huey consumers we don't use, doubling the start time.
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
             "--artifacts-destination", str(root / "artifacts")],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=root, start_new_session=True)
    try:
        if while_starting is not None:
            while_starting()
        deadline = time.monotonic() + START_DEADLINE_S
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                state = f"exited {proc.returncode}" if proc.poll() is not None else "no answer"
                raise RuntimeError(f"mlflow server at {url} did not come up in {START_DEADLINE_S} s "
                                   f"({state}); its log:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.25)
        yield SimpleNamespace(url=url, root=root, artifacts=root / "artifacts", log=log)
    finally:
        stop(proc)
