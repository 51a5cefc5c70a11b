"""Accuracy-aware int8: the search finds a passing graph where the fixed recipe fails the gate.

The model is the trained tiny BERT with an activation outlier planted the way fine-tuned
transformers grow them: layer 0's value projection scales one channel up by 1000 and the
attention output projection scales the same input channel down by 1000. In fp32 the model is
unchanged (logits equal to 1e-5), but the attention output MatMul's input now has one huge
channel, and one int8 scale for that tensor wipes out every other channel.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from finsight.artifacts import read_manifest

OUTLIER = "/inner/bert/encoder/layer.0/attention/output/dense/MatMul"


def _run(*args: str):
    from typer.testing import CliRunner

    from finsight.cli import app

    env = {name: None for name in os.environ if name.upper().startswith("FINSIGHT_")}
    return CliRunner().invoke(app, [str(a) for a in args], env=env | {"HF_HUB_OFFLINE": "1"},
                              catch_exceptions=False)


@pytest.fixture(scope="module")
def sensitive(tmp_path_factory, trained_tiny_model_dir, headlines) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root = tmp_path_factory.mktemp("int8-sensitive")
    tokenizer = AutoTokenizer.from_pretrained(trained_tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(trained_tiny_model_dir).eval()
    enc = tokenizer(headlines["text"].tolist(), padding=True, truncation=True, max_length=64,
                    return_tensors="pt")
    with torch.no_grad():
        before = model(**enc).logits
        attention = model.bert.encoder.layer[0].attention
        channel, scale = 3, 1000.0
        attention.self.value.weight[channel] *= scale
        attention.self.value.bias[channel] *= scale
        attention.output.dense.weight[:, channel] /= scale
        after = model(**enc).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)  # the same model in fp32
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    headlines[["text", "label"]].to_csv(root / "labeled.csv", index=False)
    return root


def _export(root: Path, out: str, *sets: str, as_json: bool = True):
    flags = [x for kv in sets for x in ("--set", kv)]
    result = _run(*flags, "export", root / "model", "--quantize", "int8", "--validate-data",
                  root / "labeled.csv", "--out", root / out, *(["--json"] if as_json else []))
    return result, read_manifest(root / out)


def test_fixed_recipe_fails_the_gate_and_the_search_finds_a_passing_graph(sensitive):
    fixed, manifest = _export(sensitive, "fixed", "export.int8_search=false")
    assert fixed.exit_code == 1 and "export.int8_min_agreement" in fixed.stderr
    assert manifest["valid"] is False and manifest["precision"] == "int8"
    assert manifest["validation"]["outputs"][0]["agreement"] < 0.99
    assert "search" not in manifest["quantization"]

    result, manifest = _export(sensitive, "searched")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["valid"] is True
    assert manifest["precision"] == "int8" and manifest["valid"] is True
    assert manifest["validation"]["outputs"][0]["agreement"] >= 0.99
    search = manifest["quantization"]["search"]
    tried = {c["name"]: c for c in search["candidates"]}
    # The fixed recipe and the all-int8 graph were tried and failed, with their figures.
    for name in ("dynamic", "dynamic_ffn_fp32"):
        assert tried[name]["passed"] is False and tried[name]["agreement"] < 0.99
        assert tried[name]["failed_gates"] and tried[name]["texts_per_s"] > 0
    # Measured sensitivity put the planted outlier's MatMul first: keeping it alone in fp32 passes.
    assert tried["dynamic_sensitive[1]"]["passed"] is True
    assert tried["dynamic_sensitive[1]"]["fp32_nodes"] == [OUTLIER]
    passing = [c for c in search["candidates"] if c["passed"]]
    chosen = tried[search["chosen"]]
    assert chosen["texts_per_s"] >= 0.95 * max(c["texts_per_s"] for c in passing)
    assert search["chosen"] in search["reason"] and manifest["quantization"]["fp32_nodes"] == chosen["fp32_nodes"]
    # The artifact is that graph: the outlier's MatMul is float, the rest integer.
    import onnx

    graph = onnx.load(str(sensitive / "searched" / "model.onnx")).graph
    ops = {node.name: node.op_type for node in graph.node}
    assert all(ops.get(name) == "MatMul" for name in chosen["fp32_nodes"])
    assert any(op in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "DequantizeLinear")
               for op in ops.values())
    # ...and it loads and agrees with PyTorch on texts it was not validated on.
    from finsight.config import load_settings
    from finsight.predict import load_predictor

    texts = ["Shares slid after the profit warning.", "The company reiterated its outlook.",
             "Quarterly revenue beat expectations by a wide margin."]
    settings = load_settings()
    int8 = load_predictor(str(sensitive / "searched"), settings).predict(texts)
    reference = load_predictor(str(sensitive / "model"), settings, backend="torch").predict(texts)
    assert (int8.argmax(1) == reference.argmax(1)).all()


def test_search_reports_fp32_with_the_reason_when_nothing_passes(sensitive):
    result, manifest = _export(sensitive, "bounded", "export.int8_max_candidates=1", as_json=False)
    assert result.exit_code == 0, result.output
    assert "no int8 candidate passed" in result.stdout and "int8 search" in result.stdout
    search = manifest["quantization"]["search"]
    assert [c["name"] for c in search["candidates"]] == ["dynamic"]  # the bound held
    assert search["chosen"] is None and "export.int8_max_candidates=1" in search["stopped"]
    assert "no int8 candidate passed" in search["reason"] and "fp32" in search["reason"]
    # The result is the fp32 graph, validated with the fp32 gates, and said so.
    assert manifest["precision"] == "fp32" and manifest["valid"] is True
    assert {g["key"] for g in manifest["validation"]["gates"]} == {"export.max_abs_diff", "export.min_agreement"}
    assert manifest["validation"]["outputs"][0]["max_abs_diff"] <= 1e-4


def test_calibration_batches_share_one_width(trained_tiny_model_dir, headlines):
    from finsight.config import load_settings
    from finsight.export.quantize import CachedReference, calibration_batches
    from finsight.export.source import load_source

    source = load_source(str(trained_tiny_model_dir), load_settings())
    texts = headlines["text"].tolist()[:70]
    reader = calibration_batches(CachedReference(source), texts)
    batches = list(iter(reader.get_next, None))
    assert [len(b["input_ids"]) for b in batches] == [32, 32]  # whole batches only
    assert len({b["input_ids"].shape[1] for b in batches}) == 1
    assert np.array_equal(batches[0]["input_ids"], source.encode(texts[:64])["input_ids"][:32])
