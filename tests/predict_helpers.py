"""Export dirs for the predict/analyze tests, made here so those tests don't wait on `finsight export`.

They follow the export manifest in finsight.artifacts (kind=export, format, model_file, labels,
max_length, source_model, source_sha256, valid).
"""

from __future__ import annotations

import shutil
from pathlib import Path

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def _copy_hf_files(model_dir: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for item in model_dir.iterdir():
        if item.suffix in (".json", ".txt") and item.name != "finsight.json":
            shutil.copy(item, out / item.name)


def _manifest(model_dir: Path, out: Path, fmt: str, model_file: str, *, valid: bool = True,
              precision: str = "fp32") -> None:
    import json

    from finsight.artifacts import directory_sha256, file_hashes, write_manifest

    config = json.loads((model_dir / "config.json").read_text())
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    write_manifest(out, {
        "kind": "export", "format": fmt, "precision": precision, "model_file": model_file,
        "opset": 17 if fmt == "onnx" else None, "optimized": False,
        "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in INPUTS],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 3]}],
        "labels": labels, "max_length": 64, "source_model": str(model_dir.resolve()),
        "source_sha256": directory_sha256(model_dir), "files": file_hashes(out),
        "valid": valid, "validation": {}})


def _example(model_dir: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    enc = tokenizer(["profit rose", "shares fell sharply today"], padding=True, return_tensors="pt")
    return model, tuple(enc[n] for n in INPUTS)


def make_onnx_export(model_dir: Path, out: Path, *, valid: bool = True) -> Path:
    import torch

    model, example = _example(model_dir)
    _copy_hf_files(model_dir, out)
    axes = {n: {0: "batch", 1: "sequence"} for n in INPUTS} | {"logits": {0: "batch"}}
    torch.onnx.export(model, example, str(out / "model.onnx"), input_names=INPUTS,
                      output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False)
    _manifest(model_dir, out, "onnx", "model.onnx", valid=valid)
    return out


def make_torchscript_export(model_dir: Path, out: Path) -> Path:
    import torch

    model, example = _example(model_dir)
    model.config.return_dict = False
    _copy_hf_files(model_dir, out)
    traced = torch.jit.trace(model, example, strict=False)
    traced.save(str(out / "model.pt"))
    _manifest(model_dir, out, "torchscript", "model.pt")
    return out
