"""The install `deploy/docker/Dockerfile` builds (finsight without its training stack, no mlflow),
built for real in a venv from the Dockerfile's own build stage, so this cannot drift from it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile"


def build_stage() -> list[str]:
    """The build stage's instructions, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    start = next(i for i, line in enumerate(lines) if re.match(r"FROM .* AS build$", line, re.I))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].upper().startswith("FROM ")), len(lines))
    return lines[start + 1:end]


def image_env() -> dict[str, str]:
    """The final stage's ENV (FINSIGHT_WORKDIR, FINSIGHT_PREDICT__DEVICE, ...), PATH left out."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env |= dict(item.split("=", 1) for item in shlex.split(line[4:]))
    env.pop("PATH", None)
    return env


def pip_installs(stage: list[str]) -> list[list[str]]:
    """The argument lists of every ``pip install`` in the stage's RUN commands."""
    installs = []
    for line in stage:
        if not line.upper().startswith("RUN "):
            continue
        for command in line[4:].split("&&"):
            words = shlex.split(command)
            if len(words) >= 2 and words[0].endswith("/pip") and words[1] == "install":
                installs.append(words[2:])
    return installs


def copy_sources(stage: list[str], src: Path) -> None:
    """What the stage COPYs into its WORKDIR, copied into ``src``."""
    for line in stage:
        if not line.upper().startswith("COPY "):
            continue
        *sources, target = shlex.split(line[5:])
        for source in sources:
            origin = REPO_ROOT / source
            dest = src / target / origin.name if target.endswith("/") else src / target
            if origin.is_dir():
                shutil.copytree(origin, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, dest)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory) -> Path:
    """A venv with exactly what the image's build stage installs (the pip cache is used)."""
    root = tmp_path_factory.mktemp("image")
    stage = build_stage()
    copy_sources(stage, root / "src")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installs = pip_installs(stage)
    assert installs and any("." in args for args in installs), stage
    for args in installs:
        args = [a for a in args if a != "--no-cache-dir"]  # the test may reuse the cache
        done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *args], cwd=root / "src",
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
    return venv


@pytest.mark.slow
def test_models_ref_without_mlflow(image_venv, tmp_path):
    """The image's entry point given a registry ref: one error line naming mlflow, exit 1."""
    listed = subprocess.run([str(image_venv / "bin" / "pip"), "list", "--format=freeze"],
                            capture_output=True, text=True, check=True).stdout.lower()
    assert "mlflow" not in listed and "torch" not in listed  # the image as built, not this venv
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINSIGHT_", "PYTHON"))}
    env |= image_env() | {"FINSIGHT_WORKDIR": str(tmp_path / "work"),
                          "FINSIGHT_PREDICT__MODEL": "models:/finsight-sentiment@prod",
                          # should it get as far as serving: this machine only, any free port
                          "FINSIGHT_SERVE__HOST": "127.0.0.1", "FINSIGHT_SERVE__PORT": "0",
                          "PATH": f"{image_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    done = subprocess.run([str(image_venv / "bin" / "finsight"), "serve"], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and "mlflow" in lines[0], done.stderr
    assert "pip install mlflow" in lines[0] and "models:/finsight-sentiment@prod" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
