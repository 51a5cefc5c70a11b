"""Helpers for the serve tests: settings, a gated predictor, a real `finsight serve` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from finsight.triton.server import free_port


def serve_settings(model_dir: Path, **serve: object):
    from finsight.config import load_settings

    flags = {"predict.model": str(model_dir), "predict.backend": "torch", "serve.access_log": False}
    flags.update({f"serve.{key}": value for key, value in serve.items()})
    return load_settings(flags=flags)


class Gated:
    """The real predictor, held at a gate: the test decides when a model call may finish,
    so queueing and batching are observed deterministically instead of raced."""

    def __init__(self, predictor):
        self.inner = predictor
        self.gate = threading.Event()
        self.calls: list[int] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, texts):
        self.calls.append(len(texts))
        if not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        return self.inner.predict(texts)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, raw_labels = head.partition("{")
        if sample != name:
            continue
        if all(f'{k}="{v}"' in raw_labels for k, v in labels.items()):
            total += float(value)
    return total


class LiveServer:
    """`finsight serve` as a real process on a free loopback port; stopped by PID with SIGTERM."""

    def __init__(self, model_dir: Path, log: Path, *sets: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        args = [sys.executable, "-m", "finsight"]
        for item in ("predict.backend=torch", *sets):
            args += ["--set", item]
        args += ["serve", "--model", str(model_dir), "--port", str(self.port)]
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy())

    def wait_ready(self, timeout: float = 90.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"finsight serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"finsight serve not ready after {timeout} s:\n{self.output()}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log.read_text(errors="replace")[-4000:]
