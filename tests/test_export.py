"""finsight export: ONNX fp32/int8 and TorchScript, each validated against PyTorch and reloaded.

The exports are built once per module through the real CLI on a copy of the trained tiny
model (a copy, so the `export-*` dirs land beside it and not beside the shared fixture).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from finsight.artifacts import directory_sha256, read_manifest
from finsight.config import load_settings
from finsight.errors import ModelError
from finsight.io import sha256_file

FILINGS = Path(__file__).resolve().parents[1] / "examples" / "filings.jsonl"


def _run(*args: str):
    """The CLI in-process, outside the per-test fixtures (module-scoped builds use it)."""
    from typer.testing import CliRunner

    from finsight.cli import app

    env = {name: None for name in os.environ if name.upper().startswith("FINSIGHT_")}
    return CliRunner().invoke(app, [str(a) for a in args], env=env | {"HF_HUB_OFFLINE": "1"},
                              catch_exceptions=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, trained_tiny_model_dir, headlines) -> Path:
    root = tmp_path_factory.mktemp("export-run")
    shutil.copytree(trained_tiny_model_dir, root / "model")
    headlines[["text", "label"]].to_csv(root / "labeled.csv", index=False)
    return root


def _export(run_dir: Path, *args: str) -> dict:
    result = _run("export", run_dir / "model", "--validate-data", run_dir / "labeled.csv", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # --json: stdout holds nothing but the manifest


@pytest.fixture(scope="module")
def onnx_fp32(run_dir):
    return _export(run_dir)


@pytest.fixture(scope="module")
def onnx_int8(run_dir):
    return _export(run_dir, "--quantize", "int8")


@pytest.fixture(scope="module")
def torchscript(run_dir):
    return _export(run_dir, "--format", "torchscript")


@pytest.fixture(scope="module")
def unseen():
    """Texts the validation never saw: long filings (truncated at max_length) and a short one."""
    return [json.loads(line)["text"] for line in FILINGS.read_text().splitlines()[:5]] + ["Shares slid."]


def _torch_logits(model_dir: Path, texts, max_length=64) -> tuple[np.ndarray, dict]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
    return logits, dict(enc)


def _onnx_logits(manifest: dict, enc: dict) -> np.ndarray:
    import onnxruntime as ort

    path = Path(manifest["path"])
    session = ort.InferenceSession(str(path / manifest["model_file"]), providers=["CPUExecutionProvider"])
    feed = {i["name"]: enc[i["name"]].astype(np.int64) for i in manifest["inputs"]}
    return session.run(["logits"], feed)[0]


def _check_artifact(manifest: dict, run_dir: Path, fmt: str, precision: str) -> Path:
    path = Path(manifest["path"])
    suffix = "" if precision == "fp32" else f"-{precision}"
    assert path == (run_dir / f"export-{fmt}{suffix}").resolve()  # default: <model>/../export-...
    assert manifest == read_manifest(path) | {"path": manifest["path"]}
    assert (manifest["kind"], manifest["format"], manifest["precision"]) == ("export", fmt, precision)
    assert manifest["valid"] is True and manifest["validation"]["passed"] is True
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 3]}]
    assert manifest["labels"] == ["negative", "neutral", "positive"] and manifest["max_length"] == 64
    assert manifest["source_model"] == str((run_dir / "model").resolve())
    assert manifest["source_sha256"] == directory_sha256(run_dir / "model")
    on_disk = {p.name for p in path.iterdir()} - {"finsight.json"}
    assert set(manifest["files"]) == on_disk and {manifest["model_file"], "config.json", "tokenizer.json"} <= on_disk
    assert all(sha256_file(path / name) == sha for name, sha in manifest["files"].items())
    report = manifest["validation"]
    assert report["data"]["rows"] == 300 and report["data"]["labeled"] is True
    assert report["batch_sizes"] == [1, 32]
    assert {size: fig["rows"] for size, fig in report["outputs"][0]["by_batch_size"].items()} == {"1": 32, "32": 268}
    return path


def test_onnx_fp32_validates_and_reloads(onnx_fp32, run_dir, unseen):
    _check_artifact(onnx_fp32, run_dir, "onnx", "fp32")
    out = onnx_fp32["validation"]["outputs"][0]
    assert out["max_abs_diff"] <= 1e-4 and out["agreement"] == 1.0
    assert out["macro_f1_export"] == pytest.approx(out["macro_f1_reference"])
    assert onnx_fp32["optimized"] and onnx_fp32["fusions"].get("Attention") == 2  # both layers fused
    reference, enc = _torch_logits(run_dir / "model", unseen)
    np.testing.assert_allclose(_onnx_logits(onnx_fp32, enc), reference, atol=1e-4)
    for i in range(len(unseen)):  # batch 1, unpadded
        single = {k: v[i:i + 1, : int(enc["attention_mask"][i].sum())] for k, v in enc.items()}
        np.testing.assert_allclose(_onnx_logits(onnx_fp32, single)[0], reference[i], atol=1e-4)


def test_onnx_export_loads_in_the_predictor(onnx_fp32, run_dir, unseen):
    from finsight.predict import load_predictor

    settings = load_settings()
    exported = load_predictor(onnx_fp32["path"], settings)
    assert exported.name == "onnx"
    torch_probs = load_predictor(str(run_dir / "model"), settings, backend="torch").predict(unseen)
    np.testing.assert_allclose(exported.predict(unseen), torch_probs, atol=1e-5)


def test_onnx_int8_within_gates(onnx_int8, onnx_fp32, run_dir, unseen):
    _check_artifact(onnx_int8, run_dir, "onnx", "int8")
    out = onnx_int8["validation"]["outputs"][0]
    assert out["agreement"] >= 0.99 and abs(out["macro_f1_change"]) <= 0.01
    assert out["max_abs_diff"] > 0  # it is a different model, and the report says by how much
    assert onnx_int8["quantization"]["weight_type"] == "int8"
    assert onnx_int8["size_mb"] < onnx_fp32["size_mb"]
    search = onnx_int8["quantization"]["search"]  # the fastest passing candidate was chosen
    assert search["chosen"] in {c["name"] for c in search["candidates"] if c["passed"]}
    reference, enc = _torch_logits(run_dir / "model", unseen)
    assert (_onnx_logits(onnx_int8, enc).argmax(1) == reference.argmax(1)).all()


def test_torchscript_validates_and_reloads(torchscript, run_dir, unseen):
    import torch

    path = _check_artifact(torchscript, run_dir, "torchscript", "fp32")
    assert torchscript["opset"] is None
    assert torchscript["validation"]["outputs"][0]["max_abs_diff"] <= 1e-4
    module = torch.jit.load(str(path / torchscript["model_file"]))
    reference, enc = _torch_logits(run_dir / "model", unseen)
    with torch.no_grad():  # positional inputs in manifest order, as loaders call it
        got = module(*(torch.from_numpy(enc[i["name"]]) for i in torchscript["inputs"])).numpy()
    np.testing.assert_allclose(got, reference, atol=1e-4)


def test_failed_gate_exits_1_reports_and_marks_invalid(run_dir, tmp_path):
    from finsight.model import resolve_artifact
    from finsight.predict import load_predictor

    out = tmp_path / "strict"
    # A gate of 0 cannot be met by a separately compiled graph (fp32 rounding differs). The
    # dynamo exporter and --no-optimize ride along, so those paths are exercised too.
    result = _run("--set", "export.max_abs_diff=0", "--set", "export.onnx_exporter=dynamo",
                  "export", run_dir / "model", "--no-optimize", "--out", out)
    assert result.exit_code == 1
    assert "INVALID" in result.stderr and "FAIL" in result.stderr and "max_abs_diff" in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ONNX fp32 export failed validation: max abs diff")
    assert "export.max_abs_diff" in error and str(out) in error
    assert "Traceback" not in result.output and result.stdout == ""
    manifest = read_manifest(out)
    assert manifest["valid"] is False and manifest["optimized"] is False
    gate = next(g for g in manifest["validation"]["gates"] if g["name"] == "max_abs_diff")
    assert gate["passed"] is False and gate["value"] > 0 and gate["limit"] == 0
    assert gate["value"] <= 1e-4 and manifest["exporter"] == "dynamo"  # a correct export, strict gate
    assert manifest["validation"]["data"]["kind"] == "samples"  # no --validate-data, no recorded split
    artifact = resolve_artifact(str(out))
    with pytest.raises(ModelError, match=r"failed its validation .*max abs diff .*predict\.force"):
        artifact.require_valid()
    artifact.require_valid(force=True)
    with pytest.raises(ModelError, match="predict.force"):
        load_predictor(str(out), load_settings())
    assert load_predictor(str(out), load_settings(flags={"predict.force": True})).name == "onnx"


def test_bad_options_fail_before_any_work(cli, run_dir, tmp_path):
    result = cli("export", run_dir / "model", "--format", "torchscript", "--quantize", "int8")
    assert result.exit_code == 1 and "--format onnx" in result.stderr
    result = cli("export", run_dir / "model", "--fp16", "--quantize", "int8")
    assert result.exit_code == 1 and "exclude each other" in result.stderr
    result = cli("export", run_dir / "model", "--out", run_dir / "model")
    assert result.exit_code == 1 and "exists and was not written by finsight" in result.stderr
    result = cli("export", tmp_path / "nope")
    assert result.exit_code == 1 and "nope" in result.stderr
    result = cli("export", run_dir / "model", "--validate-data", tmp_path / "missing.csv")
    assert result.exit_code == 1 and "missing.csv" in result.stderr
    assert cli("export", run_dir / "model", "--format", "tflite").exit_code == 2


# ---------------------------------------------------------------- validation data, no export


class _Recorded:
    """Stands in for a loaded Source: validation_set reads only its manifest."""

    def __init__(self, manifest):
        self.manifest = manifest


def test_validation_data_sources(tmp_path, headlines):
    from finsight.samples import SAMPLE_SENTENCES
    from finsight.export.validate import validation_set

    settings = load_settings(flags={"export.validate_max_rows": 50})
    samples = validation_set(_Recorded({}), load_settings())
    assert samples.kind == "samples" and samples.labels is None and samples.texts == list(SAMPLE_SENTENCES)

    prep = tmp_path / "prep"
    prep.mkdir()
    headlines[["text", "label"]].head(40).to_parquet(prep / "validation.parquet")
    recorded = validation_set(_Recorded({"data_dir": str(prep)}), settings)
    assert recorded.kind == "validation split" and recorded.labels == headlines["label"].head(40).tolist()

    odd = tmp_path / "odd.csv"  # other column names, synonyms, more rows than validate_max_rows
    frame = headlines.rename(columns={"text": "Headline", "label": "Sentiment"})[["Headline", "Sentiment"]]
    frame["Sentiment"] = frame["Sentiment"].map({"positive": "Bullish", "negative": "bearish", "neutral": "neu"})
    frame.to_csv(odd, index=False)
    chosen = validation_set(_Recorded({"data_dir": str(prep)}),
                            load_settings(flags={"export.validate_max_rows": 50, "export.validate_data": odd}))
    assert chosen.kind == "file" and len(chosen.texts) == 50
    by_text = dict(zip(headlines["text"], headlines["label"]))
    assert [by_text[t] for t in chosen.texts] == chosen.labels  # rows keep their labels when subsampled
    again = validation_set(_Recorded({}), load_settings(flags={"export.validate_max_rows": 50,
                                                               "export.validate_data": odd}))
    assert again.texts == chosen.texts  # the subset is fixed, not random per run

    unlabeled = tmp_path / "texts.jsonl"
    unlabeled.write_text("\n".join(json.dumps({"text": t}) for t in headlines["text"].head(20)))
    plain = validation_set(_Recorded({}), load_settings(flags={"export.validate_data": unlabeled}))
    assert plain.labels is None and len(plain.texts) == 20


def test_batches_cover_every_row_once_at_both_sizes():
    from finsight.export.validate import BATCH, batches

    for n in (1, 5, 40, 300):
        plan = batches(n)
        rows = [i for rows, _ in plan for i in range(rows.start, rows.stop)]
        assert rows == list(range(n))
        assert all(rows.stop - rows.start == 1 for rows, size in plan if size == 1)
        assert all(rows.stop - rows.start <= BATCH for rows, _ in plan)
        if n >= 8:
            assert {size for _, size in plan} == {1, BATCH}
