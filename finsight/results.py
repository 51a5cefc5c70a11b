"""Typed results of the step functions (prep, train, evaluate, export, register, triton build and
check, the `models` commands; analyze has its summary).

Each carries the figures a caller branches on as attributes, and the full record that the
command's ``--json`` prints (``as_dict()``), unchanged in shape. ``pipeline run`` and the
registry read these instead of digging through dicts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
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
    splits: dict[str, int]  # split name -> rows

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "PrepResult":
        return cls(Path(card["out"]), card, rows_in=int(card["rows_in"]), rows_out=int(card["rows_out"]),
                   splits={name: split["rows"] for name, split in card["splits"].items()})


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
    rows: int

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any]) -> "EvalResult":
        return cls(Path(metrics["out"]), metrics, accuracy=float(metrics["accuracy"]),
                   macro_f1=float(metrics["macro_f1"]), rows=int(metrics["n"]))


@dataclass(frozen=True)
class ExportResult(StepResult):
    format: str
    precision: str
    valid: bool
    size_mb: float
    agreement: float  # of the (first) output with the PyTorch model, on the validation rows
    max_abs_diff: float

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> "ExportResult":
        output = manifest["validation"]["outputs"][0]
        return cls(Path(manifest["path"]), manifest, format=manifest["format"],
                   precision=manifest["precision"], valid=bool(manifest["valid"]),
                   size_mb=manifest["size_mb"], agreement=output["agreement"],
                   max_abs_diff=output["max_abs_diff"])


@dataclass(frozen=True)
class TritonBuildResult(StepResult):
    """The manifest of a repository `finsight triton build` wrote (``out``: the repository)."""

    name: str
    models: list[str]
    classifier_backend: str
    instance_kind: str
    instances: int
    max_batch_size: int
    max_length: int
    source: str
    source_precision: str | None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> "TritonBuildResult":
        return cls(Path(manifest["path"]), manifest, name=manifest["name"], models=list(manifest["models"]),
                   classifier_backend=manifest["classifier_backend"], instance_kind=manifest["instance_kind"],
                   instances=int(manifest["instances"]), max_batch_size=int(manifest["max_batch_size"]),
                   max_length=int(manifest["max_length"]), source=manifest["source"],
                   source_precision=manifest.get("source_precision"))


class _Record:
    """``as_dict()``: the fields in declaration order, which is the ``--json`` key order."""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class RegisterResult(_Record):
    name: str
    version: int
    aliases: list[str]
    model_uri: str
    source: str
    format: str
    precision: str | None
    run_id: str
    training_run_linked: bool
    logged_model: str
    tracking_uri: str
    tags: dict[str, str]


@dataclass(frozen=True)
class TritonCheckResult(_Record):
    repository: str
    model: str
    source: str
    server: str
    protocol: str
    started_server: bool
    rows: int
    truncated_rows: int
    by_batch_size: dict[str, dict[str, Any]]  # batch size -> max_abs_diff, disagreements, worst_row
    max_abs_diff: float
    max_abs_diff_limit: float
    max_abs_diff_key: str
    agreement: float
    disagreements: int
    worst_text: str
    latency_ms: dict[str, float]  # p50, p99 (one text), batch_of, batch
    passed: bool


@dataclass(frozen=True)
class ModelVersion(_Record):
    """One row of `finsight models list`; tag values are the strings MLflow stores."""

    name: str
    version: int
    aliases: list[str]
    format: str | None
    precision: str | None
    kind: str | None
    valid: str | None  # "true", "false", or None for a model dir
    labels: str | None
    validation: dict[str, str]
    train: dict[str, str]
    eval: dict[str, str]
    created: str
    run_id: str | None
    source: str | None
    sha256: str | None
    model_uri: str


@dataclass(frozen=True)
class AliasResult(_Record):
    name: str
    alias: str
    version: int
    previous: int | None
    model_uri: str


@dataclass(frozen=True)
class PullResult(_Record):
    name: str
    version: int
    sha256: str
    tracking_uri: str
    source: str
    format: str | None
    ref: str
    out: str

    @classmethod
    def from_info(cls, info: dict[str, Any], *, ref: str, out: Path) -> "PullResult":
        """From the ``version.json`` the registry cache keeps beside a downloaded version."""
        return cls(name=info["name"], version=int(info["version"]), sha256=info["sha256"],
                   tracking_uri=info["tracking_uri"], source=info["source"], format=info.get("format"),
                   ref=ref, out=str(out))
