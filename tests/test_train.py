"""`finsight train`: a tiny BERT fine-tuned on examples/headlines.csv, tracked in sqlite MLflow."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from finsight.labels import LABELS

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny.yaml"


def write_splits(frame, out: Path, *, splits=("train", "validation", "test")) -> Path:
    """A prep-like dir: per label 80/10/10 of a fixed shuffle, plus a small data card."""
    out.mkdir(parents=True, exist_ok=True)
    shuffled = frame.sample(frac=1.0, random_state=0)
    parts = {name: [] for name in ("train", "validation", "test")}
    for _, group in shuffled.groupby("label", sort=True):
        n = len(group)
        cut = [int(0.8 * n), int(0.9 * n)]
        parts["train"].append(group.iloc[:cut[0]])
        parts["validation"].append(group.iloc[cut[0]:cut[1]])
        parts["test"].append(group.iloc[cut[1]:])
    import pandas as pd

    for name in splits:
        pd.concat(parts[name])[["text", "label"]].reset_index(drop=True).to_parquet(out / f"{name}.parquet")
    (out / "data_card.json").write_text(json.dumps({"labels": list(LABELS), "rows_out": len(frame)}))
    return out


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    yield


def _invoke(args):
    from typer.testing import CliRunner

    from finsight.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory, headlines, _one_thread):
    """Train 2 epochs, then --resume the same run to 6 epochs (shared by the tests below)."""
    root = tmp_path_factory.mktemp("train")
    data = write_splits(headlines, root / "data")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.upper().startswith("FINSIGHT_"):
                mp.delenv(name)
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.chdir(root)
        base = ["-c", TINY_CONFIG, "--set", f"workdir={root / 'work'}", "--set", "train.learning_rate=0.005"]
        first = _invoke(base + ["--set", "train.max_epochs=2", "train", "--data", data, "--out", root / "run",
                                "--json"])
        assert first.exit_code == 0, first.stderr
        first_model = json.loads((root / "run" / "model" / "finsight.json").read_text())
        resumed = _invoke(base + ["--set", "train.max_epochs=6", "train", "--data", data, "--out",
                                  root / "run", "--resume", "--json"])
        assert resumed.exit_code == 0, resumed.stderr
    return SimpleNamespace(root=root, data=data, out=root / "run", work=root / "work",
                           first=json.loads(first.stdout), resumed=json.loads(resumed.stdout),
                           first_model=first_model, stdout=first.stdout)


def test_tiny_model_trains_and_loss_falls(run):
    history = run.resumed["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.1
    assert run.resumed["best_val"]["macro_f1"] == max(row["val_macro_f1"] for row in history)
    assert run.stdout.lstrip().startswith("{")  # --json: nothing but JSON on stdout


def test_resume_continues_from_last_checkpoint(run):
    # Epochs 1-2 come from the checkpoint, unchanged; only 3-6 were trained by the resumed call.
    assert run.first["history"] == run.resumed["history"][:2]
    assert run.first["mlflow_run_id"] == run.resumed["mlflow_run_id"]
    assert len(run.first["history"]) == 2


def test_model_dir_reloads_with_labels_and_manifest(run):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = run.out / "model"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.label2id == {name: i for i, name in enumerate(LABELS)}
    manifest = json.loads((model_dir / "finsight.json").read_text())
    assert manifest["kind"] == "model" and manifest["format"] == "hf"
    assert manifest["labels"] == list(LABELS) and manifest["max_length"] == 64
    assert manifest["base_model"] == "tiny" and manifest["data_dir"] == str(run.data.resolve())
    assert manifest["mlflow_run_id"] == run.resumed["mlflow_run_id"]
    assert manifest["best_val"] == run.resumed["best_val"]
    assert len(manifest["data_card_sha256"]) == 64

    # The saved weights are the best epoch's: recomputing validation accuracy gives its number.
    import pandas as pd

    val = pd.read_parquet(run.data / "validation.parquet")
    enc = tokenizer(val["text"].tolist(), padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        pred = model(**enc).logits.argmax(-1).numpy()
    truth = val["label"].map(model.config.label2id).to_numpy()
    assert float((pred == truth).mean()) == pytest.approx(run.resumed["best_val"]["accuracy"], abs=1e-6)

    assert json.loads((run.out / "metrics.json").read_text())["history"] == run.resumed["history"]
    import yaml

    config = yaml.safe_load((run.out / "config.yaml").read_text())
    assert config["train"]["max_epochs"] == 6 and config["model"]["name_or_path"] == "tiny"


def test_run_is_tracked_in_sqlite_mlflow(run):
    from mlflow import MlflowClient

    uri = run.resumed["tracking_uri"]
    assert uri == f"sqlite:///{(run.work / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=uri)
    tracked = client.get_run(run.resumed["mlflow_run_id"])
    assert tracked.data.params["train.learning_rate"] == "0.005"
    assert tracked.data.params["model.name_or_path"] == "tiny"
    assert tracked.data.tags.get("resumed.train.max_epochs") == "6"  # first value (2) is kept
    for key in ("train_loss", "val_loss", "val_accuracy", "val_macro_f1", "train_macro_f1"):
        assert len(client.get_metric_history(tracked.info.run_id, key)) == 6, key
    assert tracked.data.metrics["best_val_macro_f1"] == pytest.approx(run.resumed["best_val"]["macro_f1"])
    artifacts = {a.path for a in client.list_artifacts(tracked.info.run_id)}
    assert {"model", "data", "metrics.json", "config.yaml"} <= artifacts
    model_files = {Path(a.path).name for a in client.list_artifacts(tracked.info.run_id, "model")}
    assert {"config.json", "finsight.json", "tokenizer.json"} <= model_files
    assert (run.work / "mlartifacts").is_dir() and not (run.root / "mlruns").exists()


class _BlockMlflow:
    """An import hook under which `import mlflow` fails, as on a machine without it."""

    def find_spec(self, name, path=None, target=None):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError("mlflow is blocked in this test")


def test_checkpoint_label_order_and_head_are_kept_without_mlflow(cli, tmp_path, monkeypatch, headlines,
                                                                 trained_tiny_model_dir):
    """A positive/negative/neutral head keeps its order and weights; registry.track_runs=false never
    imports mlflow (the benchmark GPU machine has none)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # The trained tiny model with its head rows permuted to FinBERT's order.
    order = ("positive", "negative", "neutral")
    source = AutoModelForSequenceClassification.from_pretrained(trained_tiny_model_dir)
    rows = [LABELS.index(name) for name in order]
    with torch.no_grad():
        source.classifier.weight.copy_(source.classifier.weight[rows].clone())
        source.classifier.bias.copy_(source.classifier.bias[rows].clone())
    source.config.id2label = dict(enumerate(order))
    source.config.label2id = {name: i for i, name in enumerate(order)}
    source.save_pretrained(tmp_path / "src")
    AutoTokenizer.from_pretrained(trained_tiny_model_dir).save_pretrained(tmp_path / "src")
    data = write_splits(headlines, tmp_path / "data")

    for name in [n for n in sys.modules if n == "mlflow" or n.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BlockMlflow(), *sys.meta_path])
    result = cli("--set", "registry.track_runs=false", "--set", f"workdir={tmp_path / 'work'}",
                 "--set", "train.learning_rate=1e-12", "--set", "train.weight_decay=0",
                 "--set", "train.max_epochs=1", "--set", "train.precision=32",
                 "train", "--data", data, "--model", tmp_path / "src", "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    assert "mlflow" not in sys.modules
    summary = json.loads(result.stdout)
    assert summary["head"] == "kept" and summary["labels"] == list(order)
    assert summary["mlflow_run_id"] is None and not (tmp_path / "work" / "mlflow.db").exists()

    trained = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "model").eval()
    assert trained.config.id2label == dict(enumerate(order))
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    enc = tokenizer(headlines["text"].tolist()[:60], padding=True, truncation=True, max_length=64,
                    return_tensors="pt")
    with torch.no_grad():
        before, after = source.eval()(**enc).logits, trained(**enc).logits
    assert torch.allclose(before, after, atol=1e-4)
    assert len(set(before.argmax(-1).tolist())) == 3  # varied predictions, not a constant output
    # Mapped by name, the predictions are the canonical model's.
    canonical = AutoModelForSequenceClassification.from_pretrained(trained_tiny_model_dir).eval()
    with torch.no_grad():
        reference = canonical(**enc).logits.argmax(-1).tolist()
    assert [LABELS.index(order[i]) for i in after.argmax(-1).tolist()] == reference


def test_seed_repeats_a_run_and_early_stopping_stops(tmp_path, headlines, _one_thread):
    from finsight.config import load_settings
    from finsight.train import fit

    data = write_splits(headlines, tmp_path / "data")

    def train(name: str, *overrides: str) -> dict:
        settings = load_settings(TINY_CONFIG, [f"workdir={tmp_path}", "registry.track_runs=false",
                                               f"train.out={tmp_path / name}", *overrides])
        return fit(data, settings).as_dict()

    first = train("a", "train.max_epochs=2", "train.learning_rate=0.003")
    again = train("b", "train.max_epochs=2", "train.learning_rate=0.003")
    other = train("c", "train.max_epochs=2", "train.learning_rate=0.003", "train.seed=8")
    assert first["history"] == again["history"]
    assert first["history"] != other["history"]

    # Validation macro-F1 cannot move with a learning rate of 1e-9: patience 1 stops after epoch 2.
    stalled = train("d", "train.max_epochs=5", "train.learning_rate=1e-9", "train.early_stopping_patience=1")
    assert stalled["stopped_early"] and stalled["epochs_run"] == 2 and stalled["best_epoch"] == 1


def test_new_head_for_a_base_model_or_a_head_without_label_names(tmp_path, headlines):
    """A bare encoder (like all-MiniLM-L6-v2) or a head named LABEL_0.. gets a fresh canonical head."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    from finsight.config import load_settings
    from finsight.train.model import load_start
    from finsight.train.tiny import build_tiny_model

    texts = headlines["text"].tolist()
    generic = build_tiny_model(texts, tmp_path / "generic", labels=("LABEL_0", "LABEL_1", "LABEL_2"))
    model = AutoModelForSequenceClassification.from_pretrained(generic)
    with torch.no_grad():
        model.classifier.weight.fill_(0.5)
    model.save_pretrained(generic)
    encoder = tmp_path / "encoder"
    AutoModel.from_pretrained(generic).save_pretrained(encoder)  # architectures: BertModel, no head
    (encoder / "tokenizer.json").write_bytes((generic / "tokenizer.json").read_bytes())
    (encoder / "tokenizer_config.json").write_bytes((generic / "tokenizer_config.json").read_bytes())

    for source in (generic, encoder):
        settings = load_settings(overrides=[f"model.name_or_path={source}"])
        start = load_start(settings.model, train_texts=texts, tiny_dir=tmp_path / "unused", seed=0)
        assert start.head == "new" and start.labels == list(LABELS)
        weight = start.model.classifier.weight
        assert weight.shape[0] == 3 and float(weight.std()) > 0.0 and not torch.all(weight == 0.5)


# ---------------------------------------------------------------- bad input: one line, exit 1


def _one_line_error(result, *needles):
    assert result.exit_code == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_data_dir(cli, tmp_path):
    _one_line_error(cli("train", "--data", tmp_path / "nope", "--model", "tiny"),
                    "data dir", "nope", "not found", "finsight prep")
    _one_line_error(cli("train", "--model", "tiny"), "--data")


def test_data_dir_without_validation_split(cli, tmp_path, headlines):
    data = write_splits(headlines, tmp_path / "data", splits=("train", "test"))
    _one_line_error(cli("train", "--data", data, "--model", "tiny"), "validation", "val_size")


def test_unknown_model_id_offline(cli, tmp_path, headlines):
    data = write_splits(headlines, tmp_path / "data")
    _one_line_error(cli("train", "--data", data, "--model", "finsight-test/no-such-model"),
                    "cannot load model 'finsight-test/no-such-model'", "--model DIR")
    _one_line_error(cli("train", "--data", data, "--model", "./no/such/dir"), "not found")


def test_label_count_mismatch_is_refused(cli, tmp_path, headlines):
    from finsight.train.tiny import build_tiny_model

    two = build_tiny_model(headlines["text"].tolist()[:50], tmp_path / "two", labels=("negative", "positive"))
    data = write_splits(headlines, tmp_path / "data")
    _one_line_error(cli("--set", f"workdir={tmp_path}", "train", "--data", data, "--model", two),
                    "2-label head", "3 labels")


def test_resume_needs_a_run_and_runs_are_not_overwritten(cli, tmp_path, headlines):
    data = write_splits(headlines, tmp_path / "data")
    _one_line_error(cli("train", "--data", data, "--model", "tiny", "--resume"), "--out")
    _one_line_error(cli("train", "--data", data, "--model", "tiny", "--resume", "--out", tmp_path / "r"),
                    "nothing to resume")
    (tmp_path / "r" / "model").mkdir(parents=True)
    _one_line_error(cli("train", "--data", data, "--model", "tiny", "--out", tmp_path / "r"),
                    "already holds", "--resume")


# ---------------------------------------------------------------- recipe pieces


def test_layer_depths_and_length_grouping():
    from finsight.train.data import LengthGroupedSampler
    from finsight.train.module import layer_depth

    assert layer_depth("classifier.weight", 2, "bert") == 0
    assert layer_depth("bert.pooler.dense.weight", 2, "bert") == 0
    assert layer_depth("bert.encoder.layer.1.output.dense.weight", 2, "bert") == 1
    assert layer_depth("bert.encoder.layer.0.output.dense.weight", 2, "bert") == 2
    assert layer_depth("bert.embeddings.word_embeddings.weight", 2, "bert") == 3

    lengths = np.random.default_rng(0).integers(1, 64, size=1000)
    sampler = LengthGroupedSampler(lengths, batch_size=10, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(1000))
    spread = np.mean([np.ptp(lengths[order[i:i + 10]]) for i in range(0, 1000, 10)])
    assert spread < np.mean([np.ptp(lengths[i:i + 10]) for i in range(0, 1000, 10)]) / 3
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_metrics_match_sklearn():
    sklearn = pytest.importorskip("sklearn.metrics")
    from finsight.metrics import classification_report, mean_log_loss

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    y_pred[:5] = 0  # some agreement, not all
    report = classification_report(y_true, y_pred, LABELS)
    assert report["accuracy"] == pytest.approx(sklearn.accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(sklearn.f1_score(y_true, y_pred, average="macro"))
    assert report["confusion_matrix"]["matrix"] == sklearn.confusion_matrix(y_true, y_pred).tolist()
    recall = sklearn.recall_score(y_true, y_pred, average=None)
    assert [report["per_class"][name]["recall"] for name in LABELS] == pytest.approx(recall.tolist())
    probs = rng.dirichlet(np.ones(3), 200)
    assert mean_log_loss(probs, y_true) == pytest.approx(sklearn.log_loss(y_true, probs, labels=[0, 1, 2]))
