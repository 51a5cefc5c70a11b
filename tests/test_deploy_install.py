"""Each image of deploy/, proven without Docker: a venv built from exactly the requirements file
its Dockerfile installs (tests/deploy_spec.py reads both) runs its manifest's command line and
environment on this machine.

- serve (deploy/docker/Dockerfile, deploy/k8s/serve.yaml): serves an ONNX export from a volume
  path and a models:/ ref from a real `mlflow server`; `analyze` (no pandas) and `--backend triton`
  (no tritonclient) end in one line naming what to install.
- Triton (the repository README's install lines, the requirements file Dockerfile.triton installs):
  the bundled tritonserver loads every model of a `finsight triton build` repository.
- Spark (Dockerfile.spark, spark-score.yaml): the image's script scores a table in local Spark,
  the `error` column kept.
- train (Dockerfile.gpu, train-ddp.yaml): the command parses in the image's workdir, finds its
  config, and loads the base model from the mounted path (no hub), up to the tracking server.

Slow (venv builds from the pip cache, a JVM, two servers): `.ci/run` runs this file. Each venv is
built once per session and reused by the tests that need it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO_ROOT
from tests.deploy_spec import Container, Image, containers, images, DEPLOY

pytestmark = pytest.mark.slow
SERVE_TAG, SPARK_TAG, GPU_TAG = "finsight-serve:cpu", "finsight:spark", "finsight:gpu"
SIZES: dict[str, str] = {}  # image -> what `du -sh` says its venv adds (printed at the end)


def _pip(venv: Path, *args: str, cwd: Path | None = None) -> None:
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def new_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    return path


def du(path: Path) -> str:
    return subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True).stdout.split()[0]


@pytest.fixture(scope="session")
def serve_venv(tmp_path_factory) -> Path:
    """The CPU serve image: finsight --no-deps, then its requirements file (as the Dockerfile)."""
    image = images()[SERVE_TAG]
    root = tmp_path_factory.mktemp("serve-image")
    src = root / "src"
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "finsight", src / "finsight", ignore=shutil.ignore_patterns("__pycache__"))
    venv = new_venv(root / "venv")
    _pip(venv, "--no-deps", str(src))
    (requirements,) = image.requirements
    _pip(venv, "-r", str(requirements))
    SIZES[SERVE_TAG] = du(venv)
    return venv


def image_env(image: Image, container: Container | None, venv: Path, **extra: str) -> dict[str, str]:
    """This machine's environment without finsight's variables, then the image's ENV, the
    manifest's env and ``extra``; the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINSIGHT_", "PYTHON", "MLFLOW_"))}
    env |= {k: v for k, v in image.env.items() if k != "PATH"}
    env |= (container.env if container else {}) | extra
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


def serve_container() -> Container:
    (container,) = containers(DEPLOY / "k8s" / "serve.yaml")
    return container


def loopback(args: list[str], port: int) -> list[str]:
    """The manifest's args with this machine's address and a free port in place of 0.0.0.0:8000."""
    swap = {"0.0.0.0": "127.0.0.1", "8000": str(port)}
    return [swap.get(a, a) for a in args]


@contextlib.contextmanager
def running(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as sink:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        from finsight.triton.server import stop_process_group

        stop_process_group(proc, term_wait_s=20)


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}"
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/ready", timeout=2) as response:
                if response.status == 200:
                    return
        assert time.monotonic() < deadline, f"not ready in {timeout_s} s:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)


def predict(url: str, text: str) -> dict:
    request = urllib.request.Request(f"{url}/v1/predict", data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        return json.loads(response.read())


def serve_as_the_manifest_says(venv: Path, tmp_path: Path, **env: str) -> dict:
    """The image's entrypoint with the manifest's args (loopback, a free port): /ready, then one
    /v1/predict; returns its answer."""
    from finsight.triton.server import free_port

    image, container = images()[SERVE_TAG], serve_container()
    port = free_port()
    argv = [str(venv / "bin" / image.entrypoint[0]), *image.entrypoint[1:], *loopback(container.args, port)]
    log = tmp_path / "serve.log"
    with running(argv, image_env(image, container, venv, **env), tmp_path, log) as proc:
        wait_ready(f"http://127.0.0.1:{port}", proc, log)
        return predict(f"http://127.0.0.1:{port}", "Net sales rose 12% and margins widened.")


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory, trained_tiny_model_dir) -> Path:
    from predict_helpers import make_onnx_export

    return make_onnx_export(trained_tiny_model_dir, tmp_path_factory.mktemp("export") / "export-onnx")


def test_serve_image_has_no_training_stack(serve_venv):
    listed = subprocess.run([str(serve_venv / "bin" / "pip"), "list", "--format=freeze"],
                            capture_output=True, text=True, check=True).stdout.lower()
    names = {line.split("==")[0] for line in listed.splitlines()}
    assert "mlflow-skinny" in names  # models:/ refs
    assert not names & {"torch", "transformers", "pandas", "lightning", "mlflow", "tritonclient"}, names


def test_serve_image_serves_an_export_from_a_volume(serve_venv, onnx_export, tmp_path):
    """FINSIGHT_PREDICT__MODEL names the mounted export (the image's /model, here its path)."""
    answer = serve_as_the_manifest_says(serve_venv, tmp_path, FINSIGHT_PREDICT__MODEL=str(onnx_export),
                                        FINSIGHT_WORKDIR=str(tmp_path / "cache"))
    assert answer["label"] in ("negative", "neutral", "positive")


def test_serve_image_serves_a_models_ref_from_a_real_mlflow_server(serve_venv, onnx_export, tmp_path):
    """serve.yaml as written: models:/finsight-sentiment@champion from the tracking server it names
    (here a real `mlflow server` on this machine), cached under FINSIGHT_WORKDIR."""
    from mlflow_server import mlflow_server

    container = serve_container()
    ref = container.env["FINSIGHT_PREDICT__MODEL"]
    name, alias = ref.removeprefix("models:/").split("@")
    (tmp_path / "mlflow").mkdir()
    with mlflow_server(tmp_path / "mlflow") as server:
        registered = subprocess.run(
            [sys.executable, "-m", "finsight", "--set", f"workdir={tmp_path / 'work'}", "register",
             str(onnx_export), "--name", name, "--alias", alias, "--tracking-uri", server.url, "--json"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
            env=os.environ | {"PYTHONPATH": str(REPO_ROOT)})
        assert registered.returncode == 0, registered.stderr[-3000:]
        answer = serve_as_the_manifest_says(serve_venv, tmp_path, FINSIGHT_REGISTRY__TRACKING_URI=server.url,
                                            FINSIGHT_WORKDIR=str(tmp_path / "cache"))
    assert answer["label"] in ("negative", "neutral", "positive")
    assert list((tmp_path / "cache").rglob("model.onnx"))  # the pod's cache volume


@pytest.mark.parametrize(("args", "needs", "install"), [
    (["analyze", "in.csv"], "finsight analyze needs pandas", "pip install pandas pyarrow"),
    (["serve", "--backend", "triton"], "the triton backend (http) needs tritonclient",
     "pip install 'finsight[triton]'"),
], ids=["analyze-without-pandas", "triton-without-tritonclient"])
def test_serve_image_says_what_a_command_lacks(serve_venv, onnx_export, tmp_path, args, needs, install):
    """The image's own commands given a job it has no packages for (the mounted export as model)."""
    image = images()[SERVE_TAG]
    (tmp_path / "in.csv").write_text("text\nProfit rose.\n")
    env = image_env(image, None, serve_venv, FINSIGHT_WORKDIR=str(tmp_path / "work"),
                    FINSIGHT_PREDICT__MODEL=str(onnx_export),
                    FINSIGHT_SERVE__HOST="127.0.0.1", FINSIGHT_SERVE__PORT="0")
    done = subprocess.run([str(serve_venv / "bin" / "finsight"), *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {needs}") and install in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


# ---------------------------------------------------------------- Triton


def test_triton_env_from_the_readme_loads_every_model(trained_tiny_model_dir, tmp_path):
    """The repository README's install lines, run as printed (a fresh venv from its
    requirements.txt: the list Dockerfile.triton installs), then its serve line."""
    from test_triton_readme import build_repository, check_serves_every_model, install_lines, served_as_printed

    repo = build_repository(tmp_path, trained_tiny_model_dir)
    for line in install_lines(repo):
        done = subprocess.run(["bash", "-c", line.replace("python3 -m venv", f"{sys.executable} -m venv")
                               .replace("pip install", "pip install -q")],
                              cwd=repo, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, line + "\n" + done.stderr[-3000:]
    SIZES["finsight-triton:24.10 (the python env it adds)"] = du(tmp_path / "triton-env")
    assert images()["finsight-triton:24.10"].requirements == [(REPO_ROOT / "finsight/triton/server-requirements.txt")
                                                             .resolve()]
    with served_as_printed(repo, tmp_path / "triton-env", tmp_path / "server.log") as url:
        check_serves_every_model(repo, url)


# ---------------------------------------------------------------- Spark


@pytest.fixture(scope="session")
def spark_venv(tmp_path_factory) -> Path:
    """The Spark image's requirements file; pyspark stands in for the base image's Spark."""
    from importlib.metadata import version

    (requirements,) = images()[SPARK_TAG].requirements
    venv = new_venv(tmp_path_factory.mktemp("spark-image") / "venv")
    _pip(venv, "-r", str(requirements))
    SIZES[f"{SPARK_TAG} (on top of the base image's Spark)"] = du(venv)
    _pip(venv, f"pyspark=={version('pyspark')}")
    return venv


def test_spark_script_scores_a_table_keeping_the_error_column(spark_venv, trained_tiny_model_dir, onnx_export,
                                                              tmp_path):
    """spark-score.yaml's spark-submit line with local[1] in place of the k8s master and local
    files in place of s3a://; the script at the path the image has it; the model ref as written."""
    import pandas as pd
    from mlflow_server import mlflow_server

    if shutil.which("java") is None:
        pytest.fail("Spark needs Java: install a JRE (.ci/run installs openjdk-17-jre-headless)")
    (container,) = containers(DEPLOY / "k8s" / "spark-score.yaml")
    image = images()[SPARK_TAG]
    script = next(a for a in container.args if a.endswith(".py"))
    assert image.has_file(script)
    ref = next(a.split("=", 1)[1] for a in container.args if a.startswith("--model="))
    name, alias = ref.removeprefix("models:/").split("@")
    texts = ["Profit rose sharply.", "", "Sales fell.", "The board met on Tuesday."]
    pd.DataFrame({"id": range(len(texts)), "text": texts}).to_parquet(tmp_path / "news.parquet")
    (tmp_path / "mlflow").mkdir()
    # the manifest's MLFLOW_TRACKING_URI is a tracking server (the image's mlflow-skinny has no
    # sqlite store): a real one here
    with mlflow_server(tmp_path / "mlflow") as server:
        registered = subprocess.run(
            [sys.executable, "-m", "finsight", "--set", f"workdir={tmp_path / 'work'}", "register",
             str(onnx_export), "--name", name, "--alias", alias, "--tracking-uri", server.url],
            capture_output=True, text=True, timeout=600, cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(REPO_ROOT)})
        assert registered.returncode == 0, registered.stderr[-3000:]
        done = spark_submit(container, image, spark_venv, script, tmp_path, server.url)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    scored = pd.read_parquet(tmp_path / "scored").sort_values("id")
    assert list(scored["text"]) == texts
    assert scored["error"].tolist() == ["", "empty text", "", ""]
    assert scored["label"].iloc[1] == "" and set(scored["label"].drop(index=1)) <= {"negative", "neutral", "positive"}


def spark_submit(container: Container, image: Image, venv: Path, script: str, tmp_path: Path,
                 tracking_uri: str) -> subprocess.CompletedProcess:
    """spark-score.yaml's spark-submit line with local[1] in place of the k8s master (its k8s
    options dropped) and local files in place of s3a://."""
    swap = {"--input": f"--input={tmp_path / 'news.parquet'}", "--output": f"--output={tmp_path / 'scored'}",
            "--master": "--master=local[1]"}
    args = []
    for arg in container.args:
        key = arg.split("=", 1)[0]
        if arg.startswith("--conf=spark.kubernetes") or key == "--deploy-mode":
            continue
        args.append(str(REPO_ROOT / script.removeprefix("/opt/finsight/")) if arg == script else swap.get(key, arg))
    args[1:1] = ["--conf=spark.ui.enabled=false", "--conf=spark.driver.host=127.0.0.1",
                 "--conf=spark.driver.bindAddress=127.0.0.1", "--conf=spark.executor.instances=1"]
    env = image_env(image, container, venv, MLFLOW_TRACKING_URI=tracking_uri,
                    PYSPARK_PYTHON=str(venv / "bin" / "python"), MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    return subprocess.run([str(venv / "bin" / Path(container.command[0]).name), *args], capture_output=True,
                          text=True, timeout=900, env=env, cwd=tmp_path)


# ---------------------------------------------------------------- train


def test_train_command_loads_the_mounted_model(trained_tiny_model_dir, headlines, tmp_path):
    """train-ddp.yaml's `finsight` line, in the image's workdir (with the configs it COPYs), its
    mounts under tmp_path: it reads the data, loads the base model from /models/finbert (the
    image has HF_HUB_OFFLINE=1) and stops at the tracking server it names, which is not here.

    The venv is the project's own (the GPU image's requirements less onnxruntime-gpu: a CUDA
    build does not run here)."""
    from test_train import write_splits

    from tests.test_deploy import finsight_commands

    (container,) = [c for c in containers(DEPLOY / "k8s" / "train-ddp.yaml") if c.name == "train"]
    image = images()[GPU_TAG]
    (args,) = finsight_commands(container.argv(image))
    workdir = tmp_path / image.workdir.lstrip("/")
    for dest, source in image.copies.items():
        if dest.startswith(image.workdir):
            shutil.copytree(REPO_ROOT / source, tmp_path / dest.lstrip("/"))
    mounts = {m: tmp_path / "mnt" / m.strip("/") for m in container.mounts if m != "/dev/shm"}
    write_splits(headlines, mounts["/data"] / "prep")
    shutil.copytree(trained_tiny_model_dir, mounts["/models"] / "finbert")

    def moved(arg: str) -> str:  # "/data/prep", "model.name_or_path=/models/finbert": under tmp_path
        for mount, local in mounts.items():
            arg = re.sub(rf"(^|=){re.escape(mount)}/", lambda m: f"{m.group(1)}{local}/", arg)
        return arg

    env = image_env(image, container, Path(sys.executable).parent.parent, PYTHONPATH=str(REPO_ROOT),
                    FINSIGHT_REGISTRY__TIMEOUT_S="3")
    done = subprocess.run([sys.executable, "-m", "finsight", *map(moved, args)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=workdir)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and lines, done.stdout + done.stderr
    assert "mlflow.mlops.svc" in lines[-1] and "does not answer" in lines[-1], done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_zz_report_sizes():
    """What each image's venv adds (du -sh), for the report; run last in this file."""
    print("\nsize each image's venv adds: " + "; ".join(f"{k}: {v}" for k, v in SIZES.items()))
