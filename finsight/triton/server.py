"""Find, start and stop a local ``tritonserver`` (for ``triton check``, the tests and the benchmark).

A ``tritonserver`` on PATH is used as it is. Otherwise the one bundled in the PyPI package
``nvidia-pytriton``, installed in the server's own Python environment (``triton.server_env``,
by default ``<venv>-triton`` that ``make install`` builds): that environment has numpy<2,
which the python backend's stub needs for TYPE_STRING inputs, while finsight's own venv has
numpy 2. The bundled server needs three things set up, which :func:`find_server` does:

- the stub for the environment's Python version, copied into ``backends/python/``;
- ``LD_LIBRARY_PATH=<python prefix>/lib:<site-packages>/nvidia_pytriton.libs`` (without the
  second the stub hangs the server; without the first it loads the system libpython);
- the environment's ``bin/`` first on PATH: the stub takes its Python from there
  (PYTHONPATH is ignored).

The server binds 127.0.0.1 on free ports, is waited for with a bound, and is stopped by PID.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from finsight.errors import BackendError

if TYPE_CHECKING:
    from finsight.config import Settings, TritonSettings

BUNDLE = Path("pytriton") / "tritonserver"
# The PyPI package whose bundled tritonserver runs a repository without a container (installed
# --no-deps: its own dependencies are pytriton's client side); the Makefile pins the same.
BUNDLE_PACKAGE = "nvidia-pytriton==0.7.0"
# Shipped in the package, copied into every repository: what its python models import, and the
# script that serves it with the bundled server.
SERVER_REQUIREMENTS = Path(__file__).resolve().parent / "server-requirements.txt"
LOCAL_SCRIPT = Path(__file__).resolve().parent / "serve-local.sh"
STOP_TIMEOUT_S = 15
_ERROR_LINE = re.compile(r"^E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] (.*)$")


@dataclass(frozen=True)
class ServerInstall:
    """How to run one tritonserver: the binary, its backend dir and environment additions."""

    binary: Path
    python_env: Path | None = None  # the bundled server's Python environment
    site_packages: Path | None = None
    python_version: str | None = None  # "3.11"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def bundled(self) -> bool:
        return self.site_packages is not None


def default_server_env() -> Path:
    """``<this venv>-triton``: where ``make install`` builds the server's Python environment."""
    return Path(f"{sys.prefix}-triton")


def find_server(triton: TritonSettings) -> ServerInstall:
    """A tritonserver on PATH, else the one in ``triton.server_env``'s nvidia-pytriton."""
    on_path = shutil.which("tritonserver")
    python_env = triton.server_env or default_server_env()
    if on_path:
        env_bin = Path(python_env) / "bin"
        extra = {"PATH": f"{env_bin}{os.pathsep}{os.environ.get('PATH', '')}"} if env_bin.is_dir() else {}
        return ServerInstall(binary=Path(on_path), env=extra)
    python_env = Path(python_env)
    sites = sorted(python_env.glob("lib/python3.*/site-packages"))
    binary = next((s / BUNDLE / "bin" / "tritonserver" for s in sites
                   if (s / BUNDLE / "bin" / "tritonserver").is_file()), None)
    if binary is None:
        raise BackendError(
            f"no tritonserver: none on PATH and none in {python_env} (nvidia-pytriton); run "
            "`make install` (it builds that environment), or set triton.server_env to a venv with "
            "numpy<2, onnxruntime, tokenizers and nvidia-pytriton")
    site = binary.parents[3]
    version = site.parent.name.removeprefix("python")
    home = _venv_home(python_env)
    libs = [str(home.parent / "lib"), str(site / "nvidia_pytriton.libs")]
    if os.environ.get("LD_LIBRARY_PATH"):
        libs.append(os.environ["LD_LIBRARY_PATH"])
    env = {"LD_LIBRARY_PATH": os.pathsep.join(libs),
           "PATH": f"{python_env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    return ServerInstall(binary=binary, python_env=python_env, site_packages=site,
                         python_version=version, env=env)


def _venv_home(python_env: Path) -> Path:
    """The ``bin`` dir of the Python the environment was made from (pyvenv.cfg ``home``)."""
    cfg = python_env / "pyvenv.cfg"
    if cfg.is_file():
        for line in cfg.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return Path(value.strip())
    return python_env / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TritonServer:
    """A tritonserver process on a model repository; ``with TritonServer(...) as server:``."""

    def __init__(self, repository: str | Path, settings: Settings, *, log_verbose: int = 0):
        self.repository = Path(repository).resolve()
        self.install = find_server(settings.triton)
        self.start_timeout_s = float(settings.triton.start_timeout_s)
        self.log_verbose = log_verbose
        self.http_port = self.grpc_port = 0
        self.process: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self.log: Path | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def url(self, protocol: str) -> str:
        return self.grpc_url if protocol == "grpc" else self.http_url

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    # ------------------------------------------------------------ lifecycle

    def start(self, *, same_ports: bool = False) -> "TritonServer":
        """Start the server and wait until it is ready; a failed start raises with its reason.
        ``same_ports``: a restart binds the ports of the last start (its clients reconnect)."""
        self.workdir = Path(tempfile.mkdtemp(prefix="finsight-triton-"))
        self.log = self.workdir / "server.log"
        if not (same_ports and self.http_port):
            self.http_port, self.grpc_port = free_port(), free_port()
        command = [str(self.install.binary), f"--model-repository={self.repository}",
                   "--http-address=127.0.0.1", f"--http-port={self.http_port}",
                   "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
                   "--allow-metrics=false", "--exit-timeout-secs=5", "--disable-auto-complete-config",
                   f"--log-verbose={self.log_verbose}"]
        if self.install.bundled:
            command.append(f"--backend-directory={self._bundled_backends()}")
        env = os.environ | self.install.env
        with open(self.log, "wb") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, cwd=self.workdir,
                                            start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM the server's process group (server and python stubs), SIGKILL if it lingers."""
        if self.process is not None:
            stop_process_group(self.process, term_wait_s=STOP_TIMEOUT_S)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ helpers

    def _bundled_backends(self) -> Path:
        """``backends/python`` of the bundle plus the stub for the environment's Python."""
        bundle = self.install.site_packages / BUNDLE
        stub = bundle / "python_backend_stubs" / str(self.install.python_version) / "triton_python_backend_stub"
        if not stub.is_file():
            raise BackendError(f"nvidia-pytriton in {self.install.python_env} has no python backend "
                               f"stub for Python {self.install.python_version} ({stub}); build the "
                               "server environment with another Python")
        backends = self.workdir / "backends"
        shutil.copytree(bundle / "backends", backends, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, backends / "python" / stub.name)
        return backends

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.process.poll() is not None:
                raise BackendError(f"tritonserver exited with code {self.process.returncode} while "
                                   f"starting: {self.failure_reason()}")
            if server_ready(self.http_url):
                return
            if time.monotonic() > deadline:
                raise BackendError(f"tritonserver on {self.repository} was not ready after "
                                   f"{self.start_timeout_s:g} s (triton.start_timeout_s): "
                                   f"{self.failure_reason()}")
            time.sleep(0.2)

    def log_text(self) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def failure_reason(self) -> str:
        """Why the server failed, in its own words: the models that failed to load, else its
        other error lines, else its last line."""
        return failure_reason(self.log_text())


def failure_reason(log: str) -> str:
    lines = log.splitlines()
    # glog error lines quote the message and escape its newlines; the first line says it.
    errors = [m.group(1).strip().strip('"').split("\\n")[0].strip()
              for m in map(_ERROR_LINE.match, lines) if m]
    errors = list(dict.fromkeys(e for e in errors if e))
    loads = [e for e in errors if "failed to load" in e]
    if loads or errors:
        return "; ".join(loads or errors)
    tail = [line for line in lines if line.strip()]
    return tail[-1].strip() if tail else "no output"


def server_ready(http_url: str, timeout_s: float = 2.0) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with opener.open(f"http://{http_url}/v2/health/ready", timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def stop_process_group(proc: subprocess.Popen, *, term_wait_s: float, kill_wait_s: float = 5) -> None:
    """SIGTERM the process group ``proc`` leads (a server started with ``start_new_session``),
    SIGKILL if it lingers, then SIGKILL the group once more: children (Triton's python stubs,
    uvicorn's workers) may outlive their leader."""
    for sig, wait_s in ((signal.SIGTERM, term_wait_s), (signal.SIGKILL, kill_wait_s)):
        if proc.poll() is not None:
            break
        _killpg(proc.pid, sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
    _killpg(proc.pid, signal.SIGKILL)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
