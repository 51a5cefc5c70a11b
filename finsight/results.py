"""Typed results of the step functions (prep, train, evaluate, export; analyze has its summary).

Each carries the figures a caller branches on as attributes, and the full record that the
command's ``--json`` prints (``as_dict()``), unchanged in shape. ``pipeline run`` and the
registry read these instead of digging through dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StepResult:
    out: Path  # the directory (or file) the step wrote
    record: dict[str, Any] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.record)


@dataclass(frozen=True)
class PrepResult(StepResult):
    rows_in: int
    rows_out: int

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "PrepResult":
        return cls(Path(card["out"]), card, rows_in=int(card["rows_in"]), rows_out=int(card["rows_out"]))


@dataclass(frozen=True)
class TrainResult(StepResult):
    model_dir: Path
    best_epoch: int | None
    best_val: dict[str, float]
    mlflow_run_id: str | None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "TrainResult":
        return cls(Path(record["out"]), record, model_dir=Path(record["model_dir"]),
                   best_epoch=record["best_epoch"], best_val=dict(record["best_val"]),
                   mlflow_run_id=record["mlflow_run_id"])


@dataclass(frozen=True)
class EvalResult(StepResult):
    accuracy: float
    macro_f1: float

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any]) -> "EvalResult":
        return cls(Path(metrics["out"]), metrics, accuracy=float(metrics["accuracy"]),
                   macro_f1=float(metrics["macro_f1"]))


@dataclass(frozen=True)
class ExportResult(StepResult):
    format: str
    precision: str
    valid: bool

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> "ExportResult":
        return cls(Path(manifest["path"]), manifest, format=manifest["format"],
                   precision=manifest["precision"], valid=bool(manifest["valid"]))
