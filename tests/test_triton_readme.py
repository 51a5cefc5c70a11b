"""The README of a `finsight triton build` repository: its command that serves the repository
without a container, run as printed (from the repository's directory, with the server venv the
README's install lines make; here the one `make install` builds from the same requirements
file), gets a ready server with every model loaded that answers raw text.

tests/test_deploy_install.py (slow) runs the README's install lines too, in a fresh venv.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from predict_helpers import make_onnx_export

from finsight.config import load_settings
from finsight.triton.server import BUNDLE_PACKAGE, default_server_env, free_port, server_ready, stop_process_group

START_S = 180  # the python stubs of three models start on 2 busy cores


def run_section(repo: Path) -> list[str]:
    """The shell lines of the README's "Run it" section, in order (indented code lines)."""
    text = (repo / "README.md").read_text(encoding="utf-8")
    section = text.split("## Run it", 1)[1].split("\n## ", 1)[0]
    lines, joined = [], ""
    for line in section.splitlines():
        if line.startswith("    "):
            joined += line.strip()
            if joined.endswith("\\"):
                joined = joined[:-1] + " "
                continue
            lines.append(joined)
        joined = ""
    return lines


def install_lines(repo: Path) -> list[str]:
    return [line for line in run_section(repo) if "triton-env" in line and not line.startswith("TRITON_ENV=")]


def serve_line(repo: Path) -> str:
    (line,) = [line for line in run_section(repo) if line.startswith("TRITON_ENV=")]
    return line


def models_ready(http_url: str, models: list[str]) -> dict[str, bool]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    ready = {}
    for model in models:
        try:
            with opener.open(f"http://{http_url}/v2/models/{model}/ready", timeout=5) as response:
                ready[model] = response.status == 200
        except OSError:
            ready[model] = False
    return ready


@contextlib.contextmanager
def served_as_printed(repo: Path, env_dir: Path, log: Path) -> Iterator[str]:
    """Run the README's serve line as printed, from the repository, with its ``../triton-env``
    pointing at ``env_dir`` and the ports (this machine only, free ones) in place of 8000/8001;
    yields the HTTP address once the server is ready, stops it by PID (its process group)."""
    http, grpc = free_port(), free_port()
    line = serve_line(repo)
    assert line == "TRITON_ENV=../triton-env ./serve-local.sh --http-port=8000 --grpc-port=8001", line
    env_link = repo.parent / "triton-env"
    if env_link.resolve() != env_dir.resolve():
        env_link.symlink_to(env_dir)
    line = line.replace("--http-port=8000 --grpc-port=8001",
                        f"--http-address=127.0.0.1 --http-port={http} --grpc-address=127.0.0.1 "
                        f"--grpc-port={grpc} --allow-metrics=false --exit-timeout-secs=5")
    with open(log, "wb") as sink:
        proc = subprocess.Popen(["bash", "-c", line], cwd=repo, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"})
    url = f"127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + START_S
        while not server_ready(url):
            assert proc.poll() is None, f"the server exited {proc.returncode}:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"not ready in {START_S} s:\n{log.read_text()[-4000:]}"
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc, term_wait_s=20)  # the python stubs may outlive the server


def check_serves_every_model(repo: Path, url: str) -> None:
    manifest = json.loads((repo / "finsight.json").read_text())
    assert all(models_ready(url, manifest["models"]).values()), models_ready(url, manifest["models"])
    body = json.dumps({"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [2, 1],
                                   "data": ["Profit rose sharply.", "Sales fell."]}]}).encode()
    request = urllib.request.Request(f"http://{url}/v2/models/{manifest['name']}/infer", data=body,
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as response:
        outputs = {o["name"]: o for o in json.loads(response.read())["outputs"]}
    assert len(outputs["probabilities"]["data"]) == 6
    assert set(outputs["label"]["data"]) <= {"negative", "neutral", "positive"}


def build_repository(root: Path, model_dir: Path) -> Path:
    """``finsight triton build`` of an ONNX export, as the README's bundled server needs it."""
    from typer.testing import CliRunner

    from finsight.cli import app

    export = make_onnx_export(model_dir, root / "export-onnx")
    repo = root / "repo"
    result = CliRunner().invoke(app, ["triton", "build", str(export), "--repo", str(repo),
                                      "--classifier-backend", "python", "--json"])
    assert result.exit_code == 0, result.output
    return repo


def test_the_readme_lists_what_the_python_models_import(trained_tiny_model_dir, tmp_path):
    from finsight.triton.server import SERVER_REQUIREMENTS

    repo = build_repository(tmp_path, trained_tiny_model_dir)
    assert (repo / "requirements.txt").read_text() == SERVER_REQUIREMENTS.read_text()
    assert os.access(repo / "serve-local.sh", os.X_OK)
    assert install_lines(repo) == ["python3 -m venv ../triton-env",
                                   "../triton-env/bin/pip install -r requirements.txt",
                                   f"../triton-env/bin/pip install --no-deps {BUNDLE_PACKAGE}"]
    imported = set()
    for model in (Path(__file__).parents[1] / "finsight" / "triton" / "python_models").glob("*.py"):
        imported |= set(re.findall(r"^\s*(?:import|from) (numpy|tokenizers|onnxruntime)\b",
                                   model.read_text(), re.M))
    listed = {re.split(r"[<>=]", line)[0] for line in (repo / "requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    assert imported and imported <= listed, (imported, listed)
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert f"TRITON_SERVER := {BUNDLE_PACKAGE}" in makefile  # the venv the tests serve from


def venv_view(env_dir: Path, view: Path) -> Path:
    """``env_dir`` seen through a directory of symlinks: the same Python and packages (a venv's
    prefix is where its pyvenv.cfg sits), while what serve-local.sh keeps in the venv (the
    backends with their stub) lands in ``view``, not in the shared server venv."""
    view.mkdir()
    for name in ("bin", "lib", "pyvenv.cfg"):
        (view / name).symlink_to(env_dir / name)
    return view


def test_the_readme_command_serves_the_repository(trained_tiny_model_dir, tmp_path):
    shared = Path(load_settings().triton.server_env or default_server_env())
    if not (shared / "bin" / "python").exists():
        pytest.fail(f"no server venv at {shared}: `make install` builds it")
    env_dir = venv_view(shared, tmp_path / "server-venv")
    repo = build_repository(tmp_path, trained_tiny_model_dir)
    with served_as_printed(repo, env_dir, tmp_path / "server.log") as url:
        check_serves_every_model(repo, url)
    assert list(env_dir.glob("finsight-backends-*"))  # kept in the venv (here: the view), once
    assert shlex.split(serve_line(repo))[1] == "./serve-local.sh"
