"""The artifact formats, one table: file names, titles, and the graph's output name.

Graph inputs are the tokenizer's outputs (:data:`finsight.model.tokenizer.INPUT_NAMES`);
every exported graph returns one output, :data:`OUTPUT`, the logits ``(batch, n_labels)``.
"""

from __future__ import annotations

from dataclasses import dataclass

OUTPUT = "logits"


@dataclass(frozen=True)
class Format:
    name: str
    title: str
    model_file: str | None  # None: a Hugging Face directory (config.json + weights)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("hf", "Hugging Face", None),
    Format("onnx", "ONNX", "model.onnx"),
    Format("torchscript", "TorchScript", "model.pt"),
)}


def title(fmt: str) -> str:
    return FORMATS[fmt].title if fmt in FORMATS else fmt
