"""One output schema: every backend's probabilities become columns through finsight.predict.scores."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from predict_helpers import make_onnx_export, make_torchscript_export

from finsight.config import load_settings
from finsight.labels import LABELS
from finsight.predict import load_predictor
from finsight.predict.scores import SCORE_COLUMNS, score_columns, score_frame, score_record, score_records


def test_columns_from_probabilities():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]], dtype=np.float32)
    columns = score_columns(probs)
    assert list(columns) == list(SCORE_COLUMNS)
    assert columns["label"].tolist() == ["negative", "positive", "neutral"]
    np.testing.assert_allclose(columns["confidence"], [0.7, 0.6, 0.5])
    np.testing.assert_allclose(columns["sentiment"], [-0.6, 0.5, 0.1], atol=1e-6)
    np.testing.assert_allclose(columns["p_neutral"], probs[:, 1])


def test_ties_go_to_the_first_label_everywhere():
    tie = np.array([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [1 / 3, 1 / 3, 1 / 3]], dtype=np.float32)
    expected = ["negative", "neutral", "negative"]
    assert score_columns(tie)["label"].tolist() == expected
    assert [r["label"] for r in score_records(tie)] == expected
    assert score_frame(tie)["label"].tolist() == expected


def test_unscored_rows_get_no_label_and_nan():
    probs = np.array([[0.1, 0.1, 0.8]], dtype=np.float32)
    frame = score_frame(probs, valid=np.array([False, True, False]))
    assert frame["label"].isna().tolist() == [True, False, True]
    assert frame.loc[1, "label"] == "positive"
    assert frame.loc[[0, 2], ["confidence", "p_negative", "sentiment"]].isna().all().all()
    with pytest.raises(ValueError, match="probability rows"):
        score_columns(probs, valid=np.array([True, True]))


def test_record_for_one_text():
    record = score_record([0.2, 0.3, 0.5])
    assert record["label"] == "positive" and record["confidence"] == pytest.approx(0.5)
    assert record["probabilities"] == pytest.approx(dict(zip(LABELS, [0.2, 0.3, 0.5])))
    assert record["sentiment"] == pytest.approx(0.3)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, trained_tiny_model_dir):
    """One model and its ONNX and TorchScript exports: the same weights behind every backend."""
    root = tmp_path_factory.mktemp("scores")
    model = root / "model"
    shutil.copytree(trained_tiny_model_dir, model)
    return {"torch": model, "onnx": make_onnx_export(model, root / "export-onnx"),
            "torchscript": make_torchscript_export(model, root / "export-torchscript")}


@pytest.mark.parametrize("backend", ["torch", "onnx", "torchscript"])
def test_every_backend_goes_through_the_one_schema(artifacts, backend, tmp_path, headlines):
    """analyze's columns are exactly scores.score_frame of the backend's own probabilities."""
    from finsight.analyze import analyze_files

    texts = headlines["text"].tolist()[:120]
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": range(len(texts)), "text": texts}).to_csv(src, index=False)
    settings = load_settings(flags={"predict.model": str(artifacts[backend]), "predict.backend": backend,
                                    "analyze.out": tmp_path / "out.parquet"})
    predictor = load_predictor(None, settings)
    assert predictor.name == backend
    summary = analyze_files([src], settings, predictor=predictor)
    written = pd.read_parquet(summary.outputs["scores"])
    expected = score_frame(predictor.predict(texts))
    pd.testing.assert_frame_equal(written[list(SCORE_COLUMNS)], expected, check_dtype=False, atol=1e-6)
    assert summary.label_counts == {label: int((expected["label"] == label).sum()) for label in LABELS}


def test_backends_agree_on_labels(artifacts, headlines):
    texts = headlines["text"].tolist()[:120]
    labels = {backend: score_columns(load_predictor(str(ref), load_settings(), backend=backend)
                                     .predict(texts))["label"].tolist()
              for backend, ref in artifacts.items()}
    assert labels["onnx"] == labels["torch"] == labels["torchscript"]


def test_document_mode_equals_score_documents(artifacts, tmp_path):
    """analyze --mode document and score_documents (what serve calls) give the same numbers."""
    from finsight.analyze import analyze_files
    from finsight.predict.document import score_documents

    docs = ["Profit rose 20%. Shares fell after the call. Guidance was kept.",
            "Revenue fell. The company cut 500 jobs.", "Sales were flat."]
    src = tmp_path / "docs.jsonl"
    pd.DataFrame({"doc_id": [1, 2, 3], "text": docs}).to_json(src, orient="records", lines=True)
    settings = load_settings(flags={"predict.model": str(artifacts["onnx"]), "analyze.mode": "document",
                                    "analyze.out": tmp_path / "out.parquet"})
    predictor = load_predictor(None, settings)
    written = pd.read_parquet(analyze_files([src], settings, predictor=predictor).outputs["scores"])
    direct = score_documents(predictor, docs)
    pd.testing.assert_frame_equal(written[list(SCORE_COLUMNS)], score_frame(direct.probs), check_dtype=False,
                                  atol=1e-6)
    assert written["n_sentences"].tolist() == direct.batch.n_sentences.tolist() == [3, 2, 1]
