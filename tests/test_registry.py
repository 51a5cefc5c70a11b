"""`finsight register` / `finsight models` on the embedded sqlite registry, and `models:/` refs.

One module-scoped registry holds the trained tiny model (version 1, with an evaluate output
beside it) and its ONNX export (version 2); the tests list, alias, resolve, pull and load it.
Each test starts from the same aliases (champion -> 1, nothing else), whatever ran before it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow_server import free_port
from predict_helpers import make_onnx_export

from finsight.artifacts import directory_sha256, file_hashes, write_manifest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAME = "tiny-sentiment"


def write_model_manifest(model_dir: Path, **extra) -> None:
    """The manifest `finsight train` writes (labels, data card, run id, file hashes)."""
    config = json.loads((model_dir / "config.json").read_text())
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    write_manifest(model_dir, {"kind": "model", "format": "hf", "labels": labels, "max_length": 64,
                               "best_val": {"macro_f1": 0.5}, **extra, "files": file_hashes(model_dir)})


@pytest.fixture(scope="module")
def registry_store(tmp_path_factory, trained_tiny_model_dir):
    """A sqlite registry with the tiny model (v1, alias champion) and its ONNX export (v2)."""
    from finsight.config import load_settings
    from finsight.publish import register_model
    from finsight.train import evaluate

    root = tmp_path_factory.mktemp("registry")
    model = root / "run" / "model"
    shutil.copytree(trained_tiny_model_dir, model)
    write_model_manifest(model, data_card_sha256="ab" * 32, mlflow_run_id="not-in-this-store")
    export = make_onnx_export(model, root / "run" / "export-onnx")
    settings = load_settings(overrides=[f"workdir={root / 'work'}", f"registry.model_name={NAME}",
                                        "predict.num_threads=1"])
    metrics = evaluate(str(model), settings, data=EXAMPLES / "headlines.csv", out=root / "run" / "eval-test")
    first = register_model(model, settings, aliases=["champion"])
    second = register_model(export, settings)
    return {"root": root, "model": model, "export": export, "settings": settings, "eval": metrics,
            "versions": (first, second), "uri": settings.tracking_uri()}


@pytest.fixture
def registry(registry_store):
    """The registry with its aliases as registered: champion -> 1 and no other."""
    from mlflow import MlflowClient

    client = MlflowClient(registry_store["uri"], registry_store["uri"])
    for alias in dict(client.get_registered_model(NAME).aliases or {}):
        client.delete_registered_model_alias(NAME, alias)
    client.set_registered_model_alias(NAME, "champion", "1")
    return registry_store


def _cli_args(registry) -> list[str]:
    return ["--set", f"workdir={registry['root'] / 'work'}", "--set", "predict.num_threads=1"]


def test_versions_are_listed_with_their_tags(cli, registry):
    first, second = registry["versions"]
    assert (first.version, second.version) == (1, 2)
    assert first.model_uri == f"models:/{NAME}/1" and not first.training_run_linked
    assert first.aliases == ["champion"] and second.aliases == []
    result = cli(*_cli_args(registry), "models", "list", "--name", NAME, "--json")
    assert result.exit_code == 0, result.stderr
    rows = {row["version"]: row for row in json.loads(result.stdout)}
    assert sorted(rows) == [1, 2]
    assert rows[1]["aliases"] == ["champion"] and rows[2]["aliases"] == []
    assert (rows[1]["format"], rows[2]["format"]) == ("hf", "onnx")
    assert rows[2]["valid"] == "true" and rows[1]["valid"] is None
    assert rows[1]["sha256"] == directory_sha256(registry["model"])
    assert rows[2]["sha256"] == directory_sha256(registry["export"])
    assert float(rows[1]["eval"]["macro_f1"]) == pytest.approx(registry["eval"].macro_f1, abs=1e-6)
    assert rows[1]["train"] == {"val_macro_f1": "0.5"}

    from mlflow import MlflowClient

    tags = MlflowClient(registry["uri"], registry["uri"]).get_model_version(NAME, "1").tags
    assert tags["finsight.data_card_sha256"] == "ab" * 32
    assert tags["finsight.train_run_id"] == "not-in-this-store"
    assert tags["finsight.labels"] == ",".join(json.loads((registry["model"] / "finsight.json").read_text())["labels"])
    assert tags["finsight.source"] == str(registry["model"].resolve())
    # The human table renders too.
    table = cli(*_cli_args(registry), "models", "list")
    assert table.exit_code == 0 and NAME in table.stdout and "champion" in table.stdout


def test_analyze_by_alias_writes_what_the_local_directory_writes(cli, registry, tmp_path):
    args = _cli_args(registry)
    moved = cli(*args, "models", "alias", NAME, "2", "champion", "--json")
    assert moved.exit_code == 0, moved.stderr
    assert json.loads(moved.stdout) == {"name": NAME, "alias": "champion", "version": 2, "previous": 1,
                                            "model_uri": f"models:/{NAME}@champion"}
    outputs = {}
    for key, model in (("alias", f"models:/{NAME}@champion"), ("local", registry["export"])):
        out = tmp_path / f"{key}.csv"
        result = cli(*args, "analyze", EXAMPLES / "headlines.csv", "--model", model, "--out", out)
        assert result.exit_code == 0, result.stderr
        outputs[key] = out.read_bytes()
    assert outputs["alias"] == outputs["local"]
    cache = list((registry["root"] / "work" / "registry-cache").glob(f"*/{NAME}/2/model"))
    assert len(cache) == 1 and directory_sha256(cache[0]) == directory_sha256(registry["export"])

    # Roll back: champion -> 1 again, and the torch model dir gives the same file as by path.
    back = cli(*args, "models", "alias", NAME, "1", "champion")
    assert back.exit_code == 0 and "version 2 -> version 1" in back.stdout
    for key, model in (("alias", f"models:/{NAME}@champion"), ("local", registry["model"])):
        out = tmp_path / f"{key}-torch.csv"
        result = cli(*args, "analyze", EXAMPLES / "headlines.csv", "--model", model, "--backend", "torch",
                     "--out", out)
        assert result.exit_code == 0, result.stderr
        outputs[key] = out.read_bytes()
    assert outputs["alias"] == outputs["local"]


def test_plain_mlflow_load_matches_load_predictor(registry, headlines, monkeypatch):
    import mlflow

    from finsight.predict import load_predictor
    from finsight.predict.scores import PROB_COLUMNS

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry["uri"])
    texts = headlines["text"].head(40).tolist() + [""]
    for version, local in (("2", registry["export"]), ("1", registry["model"])):
        loaded = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}", model_config={"num_threads": 1})
        from_list = loaded.predict(texts)
        from_frame = loaded.predict(pd.DataFrame({"headline": texts}))
        probs = load_predictor(str(local), registry["settings"], backend="torch" if version == "1" else None
                               ).predict(texts[:-1])
        labels = np.array(["negative", "neutral", "positive"])[probs.argmax(axis=1)]
        assert from_list["label"].iloc[:-1].tolist() == labels.tolist()
        np.testing.assert_allclose(from_list[list(PROB_COLUMNS)].iloc[:-1].to_numpy(float), probs, atol=1e-6)
        pd.testing.assert_frame_equal(from_list, from_frame)
        assert from_list["label"].iloc[-1] == "" and from_list["error"].iloc[-1] == "empty text"
        assert (from_list["error"].iloc[:-1] == "").all() and np.isnan(from_list["sentiment"].iloc[-1])


def test_pull_copies_a_version(cli, registry, tmp_path):
    out = tmp_path / "pulled"
    result = cli(*_cli_args(registry), "models", "pull", f"models:/{NAME}/2", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["version"] == 2
    assert directory_sha256(out) == directory_sha256(registry["export"])
    again = cli(*_cli_args(registry), "models", "pull", f"models:/{NAME}/2", "--out", out)
    assert again.exit_code == 1 and "--out" in again.stderr


@pytest.mark.parametrize("ref, listed", [
    (f"models:/{NAME}@nope", "its aliases: champion -> "),
    (f"models:/{NAME}/9", "its versions: 1, 2"),
    ("models:/no-such-model@champion", f"registered models: {NAME}"),
])
def test_a_missing_name_alias_or_version_lists_what_exists(cli, registry, tmp_path, ref, listed):
    result = cli(*_cli_args(registry), "analyze", EXAMPLES / "headlines.csv", "--model", ref,
                 "--out", tmp_path / "o.csv")
    assert result.exit_code == 1
    assert listed in result.stderr, result.stderr
    assert not (tmp_path / "o.csv").exists()


def _versions(registry) -> int:
    from mlflow import MlflowClient

    return len(MlflowClient(registry["uri"], registry["uri"]).search_model_versions(f"name='{NAME}'"))


def test_register_refuses_an_invalid_or_modified_artifact(cli, registry, tmp_path):
    before = _versions(registry)
    invalid = make_onnx_export(registry["model"], tmp_path / "export-invalid", valid=False)
    result = cli(*_cli_args(registry), "register", invalid, "--name", NAME)
    assert result.exit_code == 1 and "valid=false" in result.stderr, result.stderr

    changed = tmp_path / "export-changed"
    shutil.copytree(registry["export"], changed)
    (changed / "config.json").write_text((changed / "config.json").read_text() + "\n")
    (changed / "notes.txt").write_text("added later\n")
    result = cli(*_cli_args(registry), "register", changed, "--name", NAME)
    assert result.exit_code == 1
    assert "changed: config.json" in result.stderr and "not in the manifest: notes.txt" in result.stderr
    assert _versions(registry) == before


def test_a_dead_tracking_uri_fails_fast_naming_it(tmp_path, registry):
    url = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "finsight", "--set", f"workdir={tmp_path / 'work'}",
                           "register", str(registry["export"]), "--tracking-uri", url],
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "does not answer" in lines[0], done.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_registry_enabled_still_works_as_track_runs(cli, tmp_path):
    from finsight.config import load_settings

    settings = load_settings(overrides=["registry.enabled=false"])
    assert settings.registry.track_runs is False
    assert any("'registry.enabled' is deprecated" in note and "registry.track_runs" in note
               for note in settings.deprecations)
    shown = cli("--set", "registry.enabled=false", "config", "show", "registry.track_runs")
    assert shown.exit_code == 0 and "deprecated" in shown.stderr


def test_export_from_a_registered_version(cli, registry):
    """`finsight export models:/NAME/1` exports the cached version into <workdir>/exports, not
    into the registry cache, and the export validates."""
    result = cli(*_cli_args(registry), "export", f"models:/{NAME}/1", "--no-optimize", "--json")
    assert result.exit_code == 0, result.stderr
    manifest = json.loads(result.stdout)
    out = Path(manifest["path"])
    assert out == (registry["root"] / "work" / "exports" / f"{NAME}-1-onnx").resolve()
    assert manifest["valid"] and manifest["source_sha256"] == directory_sha256(registry["model"])
    assert not list((registry["root"] / "work" / "registry-cache").glob("*/*/*/export-*"))


def test_a_registry_ref_without_mlflow_is_one_line(cli, monkeypatch, tmp_path):
    """The serving image has no mlflow: a models:/ ref there names what to install (the slow
    tests/test_deploy_install.py builds that install for real)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    (tmp_path / "in.csv").write_text("text\nProfit rose.\n")
    result = cli("analyze", tmp_path / "in.csv", "--model", "models:/finsight-sentiment@prod")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: cannot resolve models:/finsight-sentiment@prod: the model registry needs mlflow, "
                     "which this install lacks; pip install mlflow, or pass a model or export directory"], \
        result.stderr


def test_a_registry_ref_needs_settings():
    from finsight.errors import ModelError
    from finsight.model import resolve_artifact

    with pytest.raises(ModelError, match="registry.tracking_uri"):
        resolve_artifact("models:/x@prod")
