"""A real `mlflow server` on 127.0.0.1 (sqlite backend, proxied artifacts): `finsight train` tracked
through it, and `finsight register` / `models` / `models:/` refs over HTTP."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from mlflow_server import free_port, mlflow_server
from test_train import TINY_CONFIG, write_splits


def _warm_imports() -> None:
    import lightning.pytorch  # noqa: F401  (the training imports load while the server boots)
    import mlflow  # noqa: F401


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server`; yields once /health answers, always stopped afterwards."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server"), while_starting=_warm_imports) as running:
        yield running


@pytest.fixture(scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_is_tracked_through_the_server(cli, server, one_thread, headlines, tmp_path):
    from mlflow import MlflowClient

    data = write_splits(headlines, tmp_path / "data", splits=("train", "validation"))
    result = cli("-c", TINY_CONFIG, "--set", f"workdir={tmp_path / 'work'}",
                 "--set", f"registry.tracking_uri={server.url}", "--set", "registry.experiment=server-it",
                 "--set", "train.max_epochs=2", "--set", "train.learning_rate=0.005",
                 "train", "--data", data, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    manifest = json.loads((tmp_path / "run" / "model" / "finsight.json").read_text())
    run_id = manifest["mlflow_run_id"]
    assert run_id and run_id == summary["mlflow_run_id"] and summary["tracking_uri"] == server.url

    client = MlflowClient(tracking_uri=server.url)
    experiment = client.get_experiment_by_name("server-it")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    tracked = runs[0]
    assert tracked.info.status == "FINISHED"
    assert tracked.data.params["train.learning_rate"] == "0.005"
    assert tracked.data.params["train.max_epochs"] == "2"
    assert tracked.data.params["model.name_or_path"] == "tiny"
    history = client.get_metric_history(run_id, "val_macro_f1")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [row["val_macro_f1"] for row in summary["history"]])
    assert len(history) == 2
    assert tracked.data.metrics["best_val_macro_f1"] == pytest.approx(summary["best_val"]["macro_f1"])

    # Artifacts went through the server's proxy into its --artifacts-destination, not to a local path.
    assert tracked.info.artifact_uri.startswith("mlflow-artifacts:"), tracked.info.artifact_uri
    assert {"model", "data", "metrics.json", "config.yaml"} <= {a.path for a in client.list_artifacts(run_id)}
    model_files = {Path(a.path).name for a in client.list_artifacts(run_id, "model")}
    assert {"config.json", "finsight.json", "tokenizer.json"} <= model_files
    assert [Path(a.path).name for a in client.list_artifacts(run_id, "data")] == ["data_card.json"]
    stored = list(server.artifacts.rglob("finsight.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text()) == manifest
    assert not (tmp_path / "work" / "mlartifacts").exists() and not (tmp_path / "mlruns").exists()


def test_unreachable_server_fails_in_one_line(cli, one_thread, headlines, tmp_path, monkeypatch):
    # mlflow alone retries a refused connection with backoff for ~4 minutes; finsight checks
    # the server first, so this must fail in seconds with mlflow's default retry settings.
    url = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    data = write_splits(headlines, tmp_path / "data", splits=("train", "validation"))
    started = time.monotonic()
    result = cli("-c", TINY_CONFIG, "--set", f"workdir={tmp_path / 'work'}",
                 "--set", f"registry.tracking_uri={url}", "--set", "train.max_epochs=1",
                 "train", "--data", data, "--out", tmp_path / "run")
    assert time.monotonic() - started < 30
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"registry.tracking_uri={url}" in lines[0], result.stderr
    assert "does not answer" in lines[0] and "registry.track_runs=false" in lines[0]
    assert not (tmp_path / "run" / "model").exists()


def test_register_alias_resolve_and_analyze_over_http(cli, server, one_thread, trained_tiny_model_dir,
                                                      tmp_path):
    """The registry on the server: the version links to its training run, artifacts go through
    the server's proxy, and `analyze --model models:/NAME@champion` scores like the directory."""
    from mlflow import MlflowClient

    from test_registry import EXAMPLES, write_model_manifest

    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    experiment = client.create_experiment("server-registry")
    train_run = client.create_run(experiment, run_name="trained-elsewhere").info.run_id
    client.set_terminated(train_run)
    model = tmp_path / "run" / "model"
    shutil.copytree(trained_tiny_model_dir, model)
    write_model_manifest(model, mlflow_run_id=train_run)
    args = ["--set", f"workdir={tmp_path / 'work'}", "--set", "predict.num_threads=1"]

    result = cli(*args, "register", model, "--name", "served", "--alias", "champion",
                 "--tracking-uri", server.url, "--json")
    assert result.exit_code == 0, result.stderr
    registered = json.loads(result.stdout)
    assert registered["version"] == 1 and registered["training_run_linked"]
    version = client.get_model_version("served", "1")
    assert version.run_id == train_run and version.tags["finsight.train_run_id"] == train_run
    assert client.get_registered_model("served").aliases == {"champion": "1"}
    stored = list(server.artifacts.rglob("finsight.json"))  # proxied into --artifacts-destination
    assert any(json.loads(p.read_text()).get("mlflow_run_id") == train_run for p in stored)

    # A second version, then roll champion forward and back over HTTP.
    again = cli(*args, "register", model, "--name", "served", "--tracking-uri", server.url, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["version"] == 2
    for target, before in ((2, 1), (1, 2)):
        moved = cli(*args, "models", "alias", "served", str(target), "champion", "--tracking-uri", server.url)
        assert moved.exit_code == 0 and f"version {before} -> version {target}" in moved.stdout

    outputs = {}
    for key, ref in (("alias", "models:/served@champion"), ("local", model)):
        out = tmp_path / f"{key}.csv"
        scored = cli(*args, "--set", f"registry.tracking_uri={server.url}", "analyze",
                     EXAMPLES / "headlines.csv", "--model", ref, "--backend", "torch", "--out", out)
        assert scored.exit_code == 0, scored.stderr
        outputs[key] = out.read_bytes()
    assert outputs["alias"] == outputs["local"]
    assert not (tmp_path / "work" / "mlartifacts").exists() and not (tmp_path / "mlruns").exists()


def test_register_over_http_leaves_nothing_in_tmpdir(server, trained_tiny_model_dir, tmp_path):
    """`finsight register` as a CI runner runs it on every merge: the stored model it downloads
    to check goes away with the run (it used to leave ~26 MB in TMPDIR each time)."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    model = tmp_path / "model"
    shutil.copytree(trained_tiny_model_dir, model)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = os.environ | {"TMPDIR": str(tmpdir), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "finsight", "--set", f"workdir={tmp_path / 'work'}",
                           "--set", "predict.num_threads=1", "register", str(model), "--name", "tmpcheck",
                           "--tracking-uri", server.url, "--json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["version"] == 1
    assert sorted(p.name for p in tmpdir.iterdir()) == []
