"""`finsight evaluate`: the same metrics code for any model dir or export, checked independently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from finsight.labels import LABELS


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread; on a busy machine it slows them tenfold."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_splits(frame, out: Path) -> Path:
    """A prep-like dir: per label 80/10/10 of a fixed shuffle."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    parts = {"train": [], "validation": [], "test": []}
    for _, group in frame.sample(frac=1.0, random_state=1).groupby("label", sort=True):
        n = len(group)
        parts["train"].append(group.iloc[:int(0.8 * n)])
        parts["validation"].append(group.iloc[int(0.8 * n):int(0.9 * n)])
        parts["test"].append(group.iloc[int(0.9 * n):])
    for name, chunks in parts.items():
        pd.concat(chunks)[["text", "label"]].reset_index(drop=True).to_parquet(out / f"{name}.parquet")
    return out


def _reference(model_dir: Path, texts: list[str], labels: list[str]) -> tuple[np.ndarray, float]:
    """Predictions (canonical ids) and mean loss straight from transformers, no finsight code."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        log_probs = torch.log_softmax(model(**enc).logits, dim=-1).numpy()
    ids = np.array([model.config.label2id[name] for name in labels])
    loss = float(-log_probs[np.arange(len(ids)), ids].mean())
    preds = [LABELS.index(model.config.id2label[i]) for i in log_probs.argmax(-1)]
    return np.array(preds), loss


def test_evaluate_writes_metrics_and_confusion_png(cli, tmp_path, headlines, trained_tiny_model_dir):
    import pandas as pd

    data = write_splits(headlines, tmp_path / "data")
    result = cli("--set", f"workdir={tmp_path / 'work'}", "evaluate", trained_tiny_model_dir,
                 "--data", data, "--backend", "torch", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)

    test = pd.read_parquet(data / "test.parquet")
    preds, loss = _reference(trained_tiny_model_dir, test["text"].tolist(), test["label"].tolist())
    truth = test["label"].map(LABELS.index).to_numpy()
    assert metrics["n"] == len(test) == 30 and metrics["backend"] == "torch"
    assert metrics["accuracy"] == pytest.approx(float((preds == truth).mean()))
    assert metrics["loss"] == pytest.approx(loss, abs=1e-4)
    matrix = np.array(metrics["confusion_matrix"]["matrix"])
    assert matrix.sum() == 30 and matrix.sum(axis=1).tolist() == [10, 10, 10]
    assert np.trace(matrix) == int((preds == truth).sum())
    assert [metrics["per_class"][name]["support"] for name in LABELS] == [10, 10, 10]
    assert 0.0 < metrics["macro_f1"] <= 1.0

    out = Path(metrics["out"])
    assert out == (tmp_path / "work" / "eval" / f"{trained_tiny_model_dir.parent.name}-test").resolve()
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    png = (out / "confusion_matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_labeled_file_and_recorded_data_dir(cli, tmp_path, headlines, trained_tiny_model_dir):
    """A CSV with other column/label spellings scores like the split; a model's manifest names its data."""
    import pandas as pd

    from finsight.artifacts import write_manifest

    data = write_splits(headlines, tmp_path / "data")
    test = pd.read_parquet(data / "test.parquet")
    test.assign(sentiment=test["label"].str.upper()).drop(columns="label").to_csv(tmp_path / "t.csv", index=False)
    from_file = cli("evaluate", trained_tiny_model_dir, "--data", tmp_path / "t.csv", "--out",
                    tmp_path / "a", "--json")
    assert from_file.exit_code == 0, from_file.stderr

    model = shutil.copytree(trained_tiny_model_dir, tmp_path / "run" / "model")
    write_manifest(model, {"kind": "model", "format": "hf", "labels": list(LABELS), "max_length": 64,
                           "data_dir": str(data)})
    recorded = cli("evaluate", model, "--out", tmp_path / "b", "--json")
    assert recorded.exit_code == 0, recorded.stderr
    a, b = json.loads(from_file.stdout), json.loads(recorded.stdout)
    assert b["data"] == str((data / "test.parquet").resolve())
    for key in ("n", "accuracy", "macro_f1", "confusion_matrix"):
        assert a[key] == b[key], key
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)


def test_torch_and_onnx_backends_are_compared_on_identical_rows(cli, tmp_path, headlines, trained_tiny_model_dir):
    # Imported, not skipped: a broken finsight.export must fail this test.
    from finsight import export
    from finsight.config import load_settings

    data = write_splits(headlines, tmp_path / "data")
    settings = load_settings(overrides=[f"workdir={tmp_path / 'work'}", f"export.out={tmp_path / 'onnx'}",
                                        f"export.validate_data={data / 'validation.parquet'}"])
    export.export_model(trained_tiny_model_dir, settings)
    runs = {}
    for backend, ref in (("torch", trained_tiny_model_dir), ("onnx", tmp_path / "onnx")):
        result = cli("evaluate", ref, "--data", data, "--backend", backend, "--out", tmp_path / backend, "--json")
        assert result.exit_code == 0, result.stderr
        runs[backend] = json.loads(result.stdout)
    assert runs["onnx"]["backend"] == "onnx" and runs["torch"]["backend"] == "torch"
    assert runs["onnx"]["confusion_matrix"] == runs["torch"]["confusion_matrix"]
    assert runs["onnx"]["loss"] == pytest.approx(runs["torch"]["loss"], abs=1e-3)


def test_bad_evaluation_input_is_one_line(cli, tmp_path, headlines, trained_tiny_model_dir):
    data = write_splits(headlines, tmp_path / "data")
    for args, needle in (
        (("--data", data, "--split", "dev"), "no dev split"),
        ((), "pass --data"),
        (("--data", tmp_path / "missing.csv"), "not found"),
    ):
        result = cli("evaluate", trained_tiny_model_dir, *args)
        assert result.exit_code == 1, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], result.stderr
