"""finsight.predict: one Predictor over torch, ONNX and TorchScript; labels, truncation, auto backend."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
from predict_helpers import make_onnx_export, make_torchscript_export

from finsight.config import load_settings
from finsight.errors import BackendError, ModelError
from finsight.labels import LABELS
from finsight.predict import Predictor, load_predictor


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, trained_tiny_model_dir):
    """A model dir with a valid ONNX export beside it (as `finsight export` lays them out)."""
    root = tmp_path_factory.mktemp("predict")
    model = root / "model"
    shutil.copytree(trained_tiny_model_dir, model)
    make_onnx_export(model, root / "export-onnx")
    return root


@pytest.fixture(scope="module")
def texts(headlines):
    return headlines["text"].tolist()


def _settings(**predict):
    return load_settings(flags={f"predict.{k}": v for k, v in predict.items()})


def _reference_probs(model_dir, texts):
    """What a user gets from transformers by hand: padded batch, softmax, model's label order."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(**enc).logits, -1).numpy()
    names = [model.config.id2label[i] for i in range(3)]
    return probs[:, [names.index(label) for label in LABELS]]


def test_torch_matches_transformers_and_protocol(workspace, texts):
    predictor = load_predictor(str(workspace / "model"), _settings(), backend="torch")
    assert isinstance(predictor, Predictor)
    assert predictor.name == "torch" and predictor.labels == LABELS and predictor.max_length == 64
    probs = predictor.predict(texts)
    assert probs.dtype == np.float32 and probs.shape == (len(texts), 3)
    np.testing.assert_allclose(probs, _reference_probs(workspace / "model", texts), atol=1e-5)


def test_length_bucketing_keeps_input_order(workspace, texts):
    predictor = load_predictor(str(workspace / "model"), _settings(batch_size=7), backend="torch")
    one_by_one = np.vstack([predictor.predict([t]) for t in texts[:40]])
    np.testing.assert_allclose(predictor.predict(texts[:40]), one_by_one, atol=1e-5)
    shuffled = np.random.default_rng(0).permutation(40)
    np.testing.assert_allclose(predictor.predict([texts[i] for i in shuffled]), one_by_one[shuffled],
                               atol=1e-5)


def test_onnx_agrees_with_torch(workspace, texts):
    torch_p = load_predictor(str(workspace / "model"), _settings(), backend="torch")
    onnx_p = load_predictor(str(workspace / "export-onnx"), _settings())
    assert onnx_p.name == "onnx" and onnx_p.labels == LABELS
    a, b = torch_p.predict(texts), onnx_p.predict(texts)
    assert (a.argmax(1) == b.argmax(1)).all()
    np.testing.assert_allclose(a, b, atol=1e-4)
    # The trained model must actually separate the labels, or agreement would mean nothing.
    assert len(set(a.argmax(1))) == 3


def test_torchscript_agrees_with_torch(workspace, texts, tmp_path):
    export = make_torchscript_export(workspace / "model", tmp_path / "export-torchscript")
    ts = load_predictor(str(export), _settings())
    assert ts.name == "torchscript"
    ref = load_predictor(str(workspace / "model"), _settings(), backend="torch").predict(texts[:50])
    np.testing.assert_allclose(ts.predict(texts[:50]), ref, atol=1e-4)


def test_label_order_follows_the_artifact(workspace, texts, tmp_path):
    """A model whose logits are in another order still yields canonical columns."""
    model = tmp_path / "model"
    shutil.copytree(workspace / "model", model)
    config = json.loads((model / "config.json").read_text())
    config["id2label"] = {"0": "Bullish", "1": "neutral", "2": "NEG"}  # synonyms, reversed order
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (model / "config.json").write_text(json.dumps(config))
    original = load_predictor(str(workspace / "model"), _settings(), backend="torch").predict(texts[:30])
    reordered = load_predictor(str(model), _settings(), backend="torch").predict(texts[:30])
    np.testing.assert_allclose(reordered, original[:, ::-1], atol=1e-6)


def test_two_label_model_is_a_model_error(headlines, tmp_path):
    from finsight.train.tiny import build_tiny_model

    model = build_tiny_model(headlines["text"].tolist()[:50], tmp_path / "m", labels=("down", "up"),
                             vocab_size=300)
    with pytest.raises(ModelError, match=r"\['down', 'up'\]"):
        load_predictor(str(model), _settings(), backend="torch")


def test_truncation_is_counted(workspace):
    predictor = load_predictor(str(workspace / "export-onnx"), _settings())
    long_text = " ".join(["revenue rose sharply"] * 60)
    encoded = predictor.encode(["profit fell", long_text])
    assert encoded.truncated.tolist() == [False, True]
    assert encoded.lengths[1] == predictor.max_length
    # Truncation keeps the first max_length tokens: extra tail words change nothing.
    np.testing.assert_allclose(predictor.predict([long_text]),
                               predictor.predict([long_text + " but losses widened badly"]), atol=1e-6)


def test_auto_prefers_a_matching_onnx_export_on_cpu(workspace, tmp_path):
    assert load_predictor(str(workspace / "model"), _settings(device="cpu")).name == "onnx"
    # A model changed after export no longer matches its export: auto falls back to torch.
    stale = tmp_path / "model"
    shutil.copytree(workspace / "model", stale)
    shutil.copytree(workspace / "export-onnx", tmp_path / "export-onnx")
    (stale / "README.md").write_text("retrained\n")
    assert load_predictor(str(stale), _settings(device="cpu")).name == "torch"
    with pytest.raises(BackendError, match="finsight export"):
        load_predictor(str(stale), _settings(), backend="onnx")


def test_invalid_export_is_refused_unless_forced(workspace, tmp_path):
    export = make_onnx_export(workspace / "model", tmp_path / "export-onnx-bad", valid=False)
    with pytest.raises(ModelError, match="predict.force"):
        load_predictor(str(export), _settings())
    assert load_predictor(str(export), _settings(force=True)).name == "onnx"


def test_bad_refs_are_model_errors(tmp_path, monkeypatch):
    import huggingface_hub.constants

    # Session fixtures may import huggingface_hub before HF_HUB_OFFLINE is set for the test;
    # offline mode makes the missing hub id fail at once instead of after network retries.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="not found"):
        load_predictor("./no/such/dir", _settings())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json"):
        load_predictor(str(tmp_path / "empty"), _settings())
    with pytest.raises(ModelError, match="cache"):
        load_predictor("nobody-here/no-such-model", _settings(), backend="torch")


@pytest.mark.skipif(importlib.util.find_spec("tritonclient") is not None,
                    reason="tritonclient is installed; this checks the message when it is not")
def test_triton_without_client_is_a_backend_error(workspace):
    with pytest.raises(BackendError, match=r"finsight\[triton\]"):
        load_predictor(str(workspace / "model"), _settings(), backend="triton")


@pytest.mark.parametrize("text, expected", [
    ("Acme Inc. reported record results. Revenue rose 14.2% to EUR 1.2 million.",
     ["Acme Inc. reported record results.", "Revenue rose 14.2% to EUR 1.2 million."]),
    ("Shares of Acme Inc. The company said demand in the U.S. was strong, e.g. in Texas.",
     ["Shares of Acme Inc.", "The company said demand in the U.S. was strong, e.g. in Texas."]),
    ("J. P. Morgan raised its target. Margins, approx. 11%, vs. 9% last year. No. 5 plant closed.",
     ["J. P. Morgan raised its target.", "Margins, approx. 11%, vs. 9% last year.", "No. 5 plant closed."]),
    ('He said "growth is strong." Analysts disagreed! Really?\n\nsales fell',
     ['He said "growth is strong."', "Analysts disagreed!", "Really?", "sales fell"]),
    ("Sales in the U.S. Steel segment fell.", ["Sales in the U.S. Steel segment fell."]),
])
def test_sentence_splitter(text, expected):
    from finsight.predict.sentences import split_sentences

    assert split_sentences(text) == expected


@pytest.mark.parametrize("source", ["tiny", "bert-base-uncased"])
def test_encoder_from_tokenizer_json_equals_transformers(source, tiny_model_dir):
    """The one tokenization rule: loading tokenizer.json directly (ONNX/TorchScript/Triton path)
    gives the ids transformers' AutoTokenizer gives (torch path, training)."""
    from transformers import AutoTokenizer

    from finsight.model import Encoder
    from tests.conftest import SHARED_DATA

    directory = tiny_model_dir if source == "tiny" else SHARED_DATA / "bert_base_uncased_tokenizer"
    if not directory.is_dir():
        pytest.skip(f"{directory} is absent (../shared/data)")
    texts = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn .", "Shares fell.", "",
             "Ümlaut café naïve — 日本 " * 40, "  spaced\tout  "]
    direct = Encoder.from_dir(directory, max_length=32)
    via_hf = Encoder.from_transformers(AutoTokenizer.from_pretrained(directory), max_length=32)
    a, b = direct.encode(texts), via_hf.encode(texts)
    assert a.ids == b.ids and a.truncated.tolist() == b.truncated.tolist()
    assert a.truncated[3] and max(a.lengths) == 32
    assert direct.pad_id == via_hf.pad_id
    hf = AutoTokenizer.from_pretrained(directory)(texts, truncation=True, max_length=32)
    assert a.ids == hf["input_ids"]
    padded = direct.pad(a)
    assert padded["input_ids"].shape == (5, 32) and padded["attention_mask"].sum() == a.lengths.sum()
