"""Word-level occlusion (finsight/predict/explain.py): planted words, sub-word grouping,
sentence-level documents, and the same attributions from torch and ONNX."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from predict_helpers import make_onnx_export

from finsight.config import load_settings
from finsight.data.recipe import DEFAULT_RECIPE
from finsight.model.tokenizer import Encoder
from finsight.predict.base import EncoderPredictor
from finsight.predict.explain import explain_texts


class Planted(EncoderPredictor):
    """The real tokenizer and attribution path; a 'model' that says negative exactly when one
    token id is in the input (and neutral otherwise), so the right answer is known."""

    name = "planted"

    def __init__(self, model_dir, piece: str, *, max_length: int = 64):
        encoder = Encoder.from_dir(model_dir, max_length=max_length)
        super().__init__(encoder=encoder, order=np.arange(3), batch_size=64, source="planted",
                         cleaning=DEFAULT_RECIPE)
        self.token = encoder._tokenizer.token_to_id(piece)
        assert self.token is not None, piece
        self.calls = 0

    def predict(self, texts):
        self.calls += 1
        return super().predict(texts)

    def _forward(self, batch):
        hit = ((batch["input_ids"] == self.token) & (batch["attention_mask"] == 1)).any(axis=1)
        probs = np.tile(np.array([0.1, 0.8, 0.1], dtype=np.float32), (len(hit), 1))
        probs[hit] = [0.9, 0.05, 0.05]
        return probs


def test_the_deciding_word_gets_the_credit_from_one_predict_call(tiny_model_dir):
    predictor = Planted(tiny_model_dir, "plunged")
    [explained] = explain_texts(predictor, ["Nokia  profit plunged in the third quarter"])
    assert predictor.calls == 1
    assert explained.label == "negative" and explained.text == "Nokia profit plunged in the third quarter"
    [top] = explained.top_words(1)
    assert top.word == "plunged" and top.contribution == pytest.approx(0.8)
    assert top.sentiment == pytest.approx(-0.85)  # 0.05-0.9 with it, 0.1-0.1 without
    assert all(w.contribution == 0 for w in explained.words if w.word != "plunged")
    assert [w.word for w in explained.words] == ["Nokia", "profit", "plunged", "in", "the", "third", "quarter"]


def test_a_word_of_many_pieces_gets_one_score(tiny_model_dir):
    predictor = Planted(tiny_model_dir, "##b")  # a piece inside "unprofitability" only
    pieces = predictor.encoder._tokenizer.encode("unprofitability").tokens
    assert len(pieces) > 4 and "##b" in pieces
    [explained] = explain_texts(predictor, ["Unprofitability worries investors"])
    assert [w.word for w in explained.words] == ["Unprofitability", "worries", "investors"]  # as written
    assert explained.words[0].contribution == pytest.approx(0.8)


def test_a_long_document_is_explained_sentence_by_sentence(tiny_model_dir):
    predictor = Planted(tiny_model_dir, "plunged", max_length=16)
    text = ("The company opened a new office in the north of the city. "
            "Its profit plunged after the deal. The chairman said nothing about the results.")
    [explained] = explain_texts(predictor, [text])
    assert predictor.calls == 1
    assert explained.sentences is not None and len(explained.sentences) == 3
    second = explained.sentences[1]
    assert second.label == "negative" and second.top_words(1)[0].word == "plunged"
    assert [s.label for s in explained.sentences] == ["neutral", "negative", "neutral"]
    # The document is neutral (the token-weighted mean, as analyze --mode document); "plunged"
    # works against that label, by its sentence's drop in p(neutral) times the sentence's weight.
    assert explained.label == "neutral"
    weights = predictor.encode([s.text for s in explained.sentences]).lengths - 2
    top = explained.top_words(1)[0]
    assert top.word == "plunged" and top.contribution == pytest.approx(-0.75 * weights[1] / weights.sum())
    # Every word of the document, each once, in order.
    assert len(explained.words) == sum(len(s.words) for s in explained.sentences)
    # The same text, whole: truncated at 16 tokens, as the model scores it in sentence mode.
    [whole] = explain_texts(predictor, [text], mode="sentence")
    assert whole.sentences is None and "plunged" not in [w.word for w in whole.words]


def test_torch_and_onnx_give_the_same_attributions(trained_tiny_model_dir, tmp_path, headlines, one_thread):
    from finsight.predict import load_predictor

    model = tmp_path / "model"
    shutil.copytree(trained_tiny_model_dir, model)
    make_onnx_export(model, tmp_path / "export-onnx")
    settings = load_settings()
    texts = headlines["text"].tolist()[:20]
    torch_p = load_predictor(str(model), settings, backend="torch")
    onnx_p = load_predictor(str(tmp_path / "export-onnx"), settings)
    assert (torch_p.name, onnx_p.name) == ("torch", "onnx")
    a, b = explain_texts(torch_p, texts), explain_texts(onnx_p, texts)
    for x, y in zip(a, b):
        assert x.label == y.label and [w.word for w in x.words] == [w.word for w in y.words]
        np.testing.assert_allclose([w.contribution for w in x.words], [w.contribution for w in y.words], atol=1e-4)
        np.testing.assert_allclose([w.sentiment for w in x.words], [w.sentiment for w in y.words], atol=1e-4)
    assert max(abs(w.contribution) for x in a for w in x.words) > 1e-3  # a real signal, not all zeros


# ---------------------------------------------------------------- the CLI


def test_explain_text_json_and_terminal_view(cli, trained_tiny_model_dir, one_thread):
    import json

    result = cli("explain", "Operating profit rose to EUR 13.1 mn", "--model", trained_tiny_model_dir,
                 "--backend", "torch", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["label"] in ("negative", "neutral", "positive")
    assert [w["word"] for w in data["words"]][:3] == ["Operating", "profit", "rose"]
    shown = cli("explain", "Operating profit rose to EUR 13.1 mn", "--model", trained_tiny_model_dir,
                "--backend", "torch")
    assert shown.exit_code == 0 and f"top words for {data['label']}" in shown.stdout
    assert "Operating profit rose to EUR 13.1 mn" in shown.stdout


@pytest.mark.parametrize("args, message", [
    (["   "], "empty text"),
    (["profit rose", "--top", "101"], "less than or equal to 100"),
])
def test_explain_bad_input_is_one_line(cli, trained_tiny_model_dir, args, message):
    result = cli("explain", *args, "--model", trained_tiny_model_dir, "--backend", "torch")
    assert result.exit_code in (1, 2) and message in result.stderr
    assert "Traceback" not in result.output


def test_explain_file_and_analyze_explain_add_top_words(cli, trained_tiny_model_dir, tmp_path, one_thread):
    import json

    import pandas as pd

    source = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3], "text": ["Profit rose sharply", "", "Shares fell after the warning"]}) \
        .to_csv(source, index=False)
    result = cli("explain", source, "--model", trained_tiny_model_dir, "--backend", "torch",
                 "--out", tmp_path / "out.csv", "--top", "2", "--json")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "out.csv")
    assert rows["top_words"].isna().tolist() == [False, True, False]
    words = json.loads(rows["top_words"][2])
    assert len(words) == 2 and {w["word"] for w in words} <= {"Shares", "fell", "after", "the", "warning"}
    analyzed = cli("analyze", source, "--model", trained_tiny_model_dir, "--backend", "torch",
                   "--out", tmp_path / "a.csv", "--explain", "2")
    assert analyzed.exit_code == 0, analyzed.output
    again = pd.read_csv(tmp_path / "a.csv")
    assert again["label"].tolist() == rows["label"].tolist()
    for a, b in zip(json.loads(again["top_words"][0]), json.loads(rows["top_words"][0])):
        assert a["word"] == b["word"] and a["contribution"] == pytest.approx(b["contribution"], abs=1e-5)
    plain = cli("analyze", source, "--model", trained_tiny_model_dir, "--backend", "torch",
                "--out", tmp_path / "p.csv")
    assert plain.exit_code == 0 and "top_words" not in pd.read_csv(tmp_path / "p.csv").columns
    zero = cli("explain", source, "--model", trained_tiny_model_dir, "--top", "0")
    assert zero.exit_code == 2 and "--top" in zero.stderr
    bad = cli("analyze", source, "--model", trained_tiny_model_dir, "--explain", "101")
    assert bad.exit_code == 1 and "analyze.explain" in bad.stderr and "less than or equal to 100" in bad.stderr
