"""`finsight analyze`: formats, backends, order, bad rows, malformed inputs, documents, groups, memory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from predict_helpers import make_onnx_export

from finsight.labels import LABELS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCORE_COLUMNS = ["label", "confidence", "p_negative", "p_neutral", "p_positive", "sentiment"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, trained_tiny_model_dir):
    root = tmp_path_factory.mktemp("analyze")
    shutil.copytree(trained_tiny_model_dir, root / "model")
    make_onnx_export(root / "model", root / "export-onnx")
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, headlines):
    """The headlines, shuffled, with a few empty and null texts, as CSV, JSONL and Parquet."""
    root = tmp_path_factory.mktemp("inputs")
    frame = headlines.sample(frac=1.0, random_state=3).reset_index(drop=True)
    frame.loc[[5, 77], "text"] = ["", "   "]
    frame.loc[[40], "text"] = None
    files = {"csv": root / "h.csv", "jsonl": root / "h.jsonl", "parquet": root / "h.parquet"}
    frame.to_csv(files["csv"], index=False)
    frame.to_json(files["jsonl"], orient="records", lines=True)
    frame.to_parquet(files["parquet"], index=False)
    return frame, files


def _read(path: Path) -> pd.DataFrame:
    return {".csv": pd.read_csv, ".parquet": pd.read_parquet,
            ".jsonl": lambda p: pd.read_json(p, lines=True)}[path.suffix](path)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_torch_and_onnx_give_the_same_labels_in_input_order(cli, workspace, inputs, tmp_path, fmt):
    frame, files = inputs
    outputs = {}
    for backend, model in [("torch", workspace / "model"), ("onnx", workspace / "export-onnx")]:
        out = tmp_path / f"{backend}.{fmt}"
        result = cli("analyze", files[fmt], "--out", out, "--model", model, "--backend", backend,
                     "-k", "label")
        assert result.exit_code == 0, result.output
        outputs[backend] = _read(out)
    torch_out, onnx_out = outputs["torch"], outputs["onnx"]
    assert len(torch_out) == len(frame)
    assert torch_out["id"].tolist() == frame["id"].tolist()
    assert torch_out["label"].fillna("").tolist() == onnx_out["label"].fillna("").tolist()
    np.testing.assert_allclose(torch_out["p_positive"], onnx_out["p_positive"], atol=1e-4)
    # The gold label is kept under another name, and the trained model mostly gets it right.
    scored = torch_out.dropna(subset=["label"])
    assert (scored["label"] == scored["input_label"]).mean() > 0.8


def test_bad_rows_get_an_error_reason(cli, workspace, inputs, tmp_path):
    frame, files = inputs
    out = tmp_path / "out.csv"
    result = cli("analyze", files["csv"], "--out", out, "--model", workspace / "export-onnx", "--json")
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    bad = scored[scored["error"].notna()]
    assert bad.index.tolist() == [5, 40, 77]
    assert set(bad["error"]) == {"empty text", "missing text"}
    assert bad[SCORE_COLUMNS].isna().all().all()
    good = scored[scored["error"].isna()]
    np.testing.assert_allclose(good[["p_negative", "p_neutral", "p_positive"]].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(good["sentiment"], good["p_positive"] - good["p_negative"], atol=1e-6)
    np.testing.assert_allclose(good["confidence"], good[["p_negative", "p_neutral", "p_positive"]].max(axis=1))
    assert (good["label"] == good[["p_negative", "p_neutral", "p_positive"]].idxmax(axis=1).str[2:]).all()
    summary = json.loads(result.stdout)
    assert summary["rows"] == len(frame) and summary["errors"] == 3
    assert sum(summary["label_counts"].values()) == len(frame) - 3
    assert summary["mean_sentiment"] == pytest.approx(good["sentiment"].mean(), abs=1e-5)
    assert summary["backend"] == "onnx" and summary["outputs"]["scores"] == str(out)


def test_malformed_inputs_exit_1_and_write_nothing(cli, workspace, tmp_path):
    broken = tmp_path / "broken.jsonl"
    good_line = json.dumps({"id": 1, "text": "profit rose"})
    broken.write_text("\n".join([good_line] * 20000 + ['{"id": 2, "text": "oops'] + [good_line]) + "\n")
    out = tmp_path / "out.csv"
    result = cli("analyze", broken, "--out", out, "--model", workspace / "export-onnx")
    assert result.exit_code == 1
    assert "line 20001" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.csv*"))

    csv = tmp_path / "news.csv"
    csv.write_text("id,headline_text\n1,profit rose\n")
    result = cli("analyze", csv, "--out", out, "--model", workspace / "export-onnx",
                 "--text-column", "headline_txt")
    assert result.exit_code == 1 and "headline_text" in result.stderr  # names the close match
    result = cli("analyze", csv, "--out", out, "--model", workspace / "export-onnx")
    assert result.exit_code == 1 and "--text-column" in result.stderr
    assert not out.exists()


def test_multiple_inputs_are_concatenated_with_a_source_column(cli, workspace, inputs, tmp_path):
    frame, files = inputs
    out = tmp_path / "both.parquet"
    result = cli("analyze", files["csv"], files["parquet"], "--out", out, "--model", workspace / "export-onnx")
    assert result.exit_code == 0, result.output
    both = pd.read_parquet(out)
    assert both["source"].tolist() == [str(files["csv"])] * len(frame) + [str(files["parquet"])] * len(frame)
    assert both["id"].tolist() == frame["id"].tolist() * 2

    other = tmp_path / "other.csv"
    other.write_text("doc_id,text\nd1,profit rose\n")
    result = cli("analyze", files["csv"], other, "--out", tmp_path / "mixed.csv", "--model",
                 workspace / "export-onnx")
    assert result.exit_code == 1 and "differ" in result.stderr
    assert not (tmp_path / "mixed.csv").exists()


def test_sentence_mode_counts_truncated_rows(cli, workspace, tmp_path):
    texts = ["profit rose", " ".join(["revenue declined sharply"] * 40), "shares fell"]
    path = tmp_path / "t.csv"
    pd.DataFrame({"text": texts}).to_csv(path, index=False)
    result = cli("analyze", path, "--out", tmp_path / "o.csv", "--model", workspace / "export-onnx", "--json")
    assert json.loads(result.stdout)["truncated"] == 1


def test_document_mode_aggregates_sentences(cli, workspace, tmp_path):
    from finsight.config import load_settings
    from finsight.predict import load_predictor
    from finsight.predict.sentences import split_sentences

    out = tmp_path / "docs.jsonl"
    result = cli("analyze", EXAMPLES / "filings.jsonl", "--out", out, "--model", workspace / "export-onnx",
                 "--mode", "document", "--sentences", "--json")
    assert result.exit_code == 0, result.output
    docs = pd.read_json(out, lines=True)
    sentences = pd.read_json(tmp_path / "docs.sentences.jsonl", lines=True)
    filings = pd.read_json(EXAMPLES / "filings.jsonl", lines=True)
    assert docs["doc_id"].tolist() == filings["doc_id"].tolist()
    assert (docs["n_sentences"] > 3).all()
    assert sentences.groupby("doc_id", sort=False).size().tolist() == docs["n_sentences"].tolist()

    # Recompute one document by hand: score its sentences alone, weight by tokens.
    predictor = load_predictor(str(workspace / "export-onnx"), load_settings())
    text = filings.loc[0, "text"]
    parts = split_sentences(text)
    assert len(parts) == docs.loc[0, "n_sentences"]
    encoded = predictor.encode(parts)
    weights = np.maximum(encoded.lengths - 2, 1)
    expected = (predictor.predict(parts) * weights[:, None]).sum(0) / weights.sum()
    np.testing.assert_allclose(docs.loc[0, ["p_negative", "p_neutral", "p_positive"]].to_numpy(float),
                               expected, atol=1e-5)
    assert docs.loc[0, "label"] == LABELS[int(expected.argmax())]
    summary = json.loads(result.stdout)
    assert summary["sentences"] == len(sentences) and summary["rows"] == len(filings)


def test_group_by_writes_the_summary(cli, workspace, inputs, tmp_path):
    frame, files = inputs
    out = tmp_path / "scored.csv"
    result = cli("--set", "analyze.chunk_rows=64", "analyze", files["csv"], "--out", out,
                 "--model", workspace / "export-onnx", "--group-by", "ticker,date")
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    summary = pd.read_csv(tmp_path / "scored.summary.csv")
    assert list(summary.columns) == ["ticker", "date", "count", "share_negative", "share_neutral",
                                     "share_positive", "mean_sentiment", "errors"]
    grouped = scored.groupby(["ticker", "date"])
    expected = pd.DataFrame({
        "count": grouped.size(), "mean_sentiment": grouped["sentiment"].mean(),
        "share_negative": grouped["label"].apply(lambda s: (s == "negative").sum() / s.notna().sum()),
        "errors": grouped["error"].apply(lambda s: s.notna().sum())}).reset_index()
    merged = summary.merge(expected, on=["ticker", "date"], suffixes=("", "_expected"))
    assert len(merged) == len(summary) == len(expected)
    for column in ("count", "mean_sentiment", "share_negative", "errors"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_expected"], atol=1e-6)
    assert summary["count"].sum() == len(frame)


def _peak_rss_kb(args: list[str]) -> int:
    """Peak RSS of one `finsight analyze` run, measured by a fresh parent process."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
             "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "finsight", *args],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip())


def test_memory_stays_flat_with_file_size(workspace, tmp_path):
    """Peak RSS of a 100k-row run stays at that of a 10k-row run (10x the rows, same chunks)."""
    words = np.array("profit rose fell sharply revenue loss shares guidance margin strong weak "
                     "quarter dividend debt outlook record decline growth".split())
    rng = np.random.default_rng(0)
    big = pd.DataFrame({"id": np.arange(100_000),
                        "text": [" ".join(w) for w in rng.choice(words, size=(100_000, 16))]})
    files = {}
    for rows in (10_000, 100_000):
        files[rows] = tmp_path / f"in{rows}.csv"
        big.head(rows).to_csv(files[rows], index=False)
    del big
    model = str(workspace / "export-onnx")
    peak = {rows: _peak_rss_kb(["--set", "analyze.chunk_rows=2048", "analyze", str(path), "--out",
                                str(tmp_path / f"o{rows}.csv"), "--model", model, "--batch-size", "512"])
            for rows, path in files.items()}
    assert len(pd.read_csv(tmp_path / "o100000.csv", usecols=["id"])) == 100_000
    # Holding the whole 100k-row file (texts, token ids, scores) adds a few hundred MB
    # (measured: +1.2 GB for 200k rows read as one chunk); streaming adds next to nothing.
    growth_mb = (peak[100_000] - peak[10_000]) / 1024
    assert growth_mb < 40, f"peak RSS grew {growth_mb:.0f} MB from 10k to 100k rows: {peak}"
    assert peak[100_000] < 1.2 * peak[10_000]


def test_first_scores_are_written_after_one_batch_on_cpu(workspace, inputs, tmp_path):
    """Start-up latency: the first chunk is one inference batch, and a CPU backend's chunk is
    written as soon as it is scored, before the next chunk is submitted."""
    from finsight.analyze import analyze_files
    from finsight.config import load_settings
    from finsight.predict import load_predictor

    frame, files = inputs
    settings = load_settings(flags={"analyze.out": tmp_path / "out.csv", "predict.batch_size": 16})
    real = load_predictor(str(workspace / "export-onnx"), settings)
    events: list[tuple[str, int]] = []

    class Recording:  # the real predictor, with its calls recorded
        name, device, source, batch_size, cleaning = real.name, real.device, real.source, real.batch_size, real.cleaning

        def encode(self, texts):
            return real.encode(texts)

        def submit(self, encoded):
            events.append(("submit", len(encoded)))
            return real.submit(encoded)

    analyze_files([files["csv"]], settings, predictor=Recording(),
                  on_progress=lambda done, total: events.append(("written", done)))
    first, rest = 16 - _blank(frame[:16]), len(frame) - 16 - _blank(frame[16:])  # blank rows are not scored
    assert events[:3] == [("submit", first), ("written", 16), ("submit", rest)]
    assert events[-1] == ("written", len(frame))
    written = pd.read_csv(tmp_path / "out.csv")
    assert len(written) == len(frame) and written["error"].notna().sum() == _blank(frame)


def _blank(part: pd.DataFrame) -> int:
    return int(part["text"].isna().sum() + (part["text"].fillna("x").str.strip() == "").sum())
