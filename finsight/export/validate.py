"""Validation: the exported file against the PyTorch model on real text, and the gates it must pass.

Both run on identical token batches: part of the set one text at a time (batch 1, no
padding) and the rest in batches of mixed lengths (padding and masking exercised), so a
graph that is only right for one shape or for unpadded input is caught.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from finsight.errors import DataError
from finsight.export.source import Source
from finsight.model.formats import OUTPUT

if TYPE_CHECKING:
    from finsight.config import DataSettings, ExportSettings, Settings

BATCH = 32  # the "many" batch size
SINGLE_SHARE = 4  # a quarter of the rows (at most one batch of them) run at batch size 1
_CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
              "avx_vnni", "amx_int8", "amx_bf16", "asimd", "asimddp")


@dataclass
class ValidationSet:
    texts: list[str]
    labels: list[str] | None  # canonical names, when the data has labels
    source: str
    kind: str  # "file", "validation split" or "samples"


def validation_set(source: Source, settings: Settings) -> ValidationSet:
    """``export.validate_data``, else the source run's validation split, else the bundled samples."""
    cfg = settings.export
    if cfg.validate_data is not None:
        path = Path(cfg.validate_data)
        if path.is_dir() and (path / "validation.parquet").is_file():
            path = path / "validation.parquet"  # a `finsight prep` output dir
        chosen = read_rows(path, settings.data, kind="file")
    elif (split := _recorded_split(source)) is not None:
        chosen = read_rows(split, settings.data, kind="validation split")
    else:
        from finsight.samples import SAMPLE_SENTENCES

        chosen = ValidationSet(list(SAMPLE_SENTENCES), None, "finsight bundled sample sentences", "samples")
    return subsample(chosen, cfg.validate_max_rows)


def _recorded_split(source: Source) -> Path | None:
    data_dir = source.manifest.get("data_dir")
    split = Path(data_dir) / "validation.parquet" if data_dir else None
    return split if split is not None and split.is_file() else None


def read_rows(path: Path, data: DataSettings, *, kind: str) -> ValidationSet:
    """The texts (and labels, when the file has them) of a data file, read as ``data`` says."""
    from finsight.data.load import read_labeled

    if not path.exists():
        raise DataError(f"validation data {path} not found; pass an existing file to --validate-data "
                        "(text column, optional label column) or a `finsight prep` output dir")
    rows = read_labeled(path, data, require_labels=False)
    return ValidationSet(rows.texts, rows.labels, rows.source, kind)


def subsample(chosen: ValidationSet, max_rows: int) -> ValidationSet:
    """At most ``max_rows`` rows, a fixed random subset in file order (files are often sorted)."""
    if len(chosen.texts) <= max_rows:
        return chosen
    keep = np.sort(np.random.default_rng(0).choice(len(chosen.texts), max_rows, replace=False))
    labels = [chosen.labels[i] for i in keep] if chosen.labels is not None else None
    return ValidationSet([chosen.texts[i] for i in keep], labels, chosen.source, chosen.kind)


# ---------------------------------------------------------------- comparing


def batches(n: int) -> list[tuple[slice, int]]:
    """(rows, nominal batch size): the first rows one by one, the rest in batches of ``BATCH``."""
    single = min(BATCH, max(1, n // SINGLE_SHARE))
    return [(slice(i, i + 1), 1) for i in range(single)] + [
        (slice(i, min(i + BATCH, n)), BATCH) for i in range(single, n, BATCH)]


def compare(source: Source, run: Callable[[dict], np.ndarray], data: ValidationSet, *,
            precision: str, provider: str, cfg: ExportSettings) -> dict[str, Any]:
    """The validation report for one exported model, gates applied."""
    started = time.perf_counter()
    reference, exported, sizes = [], [], []
    for rows, size in batches(len(data.texts)):
        batch = source.encode(data.texts[rows])
        reference.append(source.logits(batch))
        exported.append(run(batch))
        sizes.extend([size] * (rows.stop - rows.start))
    ref, exp = np.concatenate(reference), np.concatenate(exported)
    row_size = np.asarray(sizes)
    output = {"name": OUTPUT, **_figures(ref, exp), **_f1(ref, exp, data.labels, source.labels),
              "by_batch_size": {str(size): _figures(ref[row_size == size], exp[row_size == size])
                                for size in sorted(set(sizes))},
              "worst_row": _worst(ref, exp, data.texts)}
    gates = apply_gates(precision, output, cfg)
    return {
        "passed": all(g["passed"] is not False for g in gates),
        "precision": precision,
        "data": {"source": data.source, "kind": data.kind, "rows": len(data.texts),
                 "labeled": data.labels is not None},
        "batch_sizes": sorted(set(sizes)),
        "outputs": [output],
        "gates": gates,
        "runtime": {"provider": provider, "cpu_features": cpu_features(), **_versions()},
        "seconds": round(time.perf_counter() - started, 3),
    }


def _figures(ref: np.ndarray, exp: np.ndarray) -> dict[str, Any]:
    if not len(ref):
        return {"rows": 0}
    diff = np.abs(ref.astype(np.float64) - exp.astype(np.float64))
    same = ref.argmax(axis=1) == exp.argmax(axis=1)
    return {"rows": int(len(ref)), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "agreement": float(same.mean()), "disagreements": int((~same).sum())}


def _f1(ref: np.ndarray, exp: np.ndarray, labels: list[str] | None, model_labels: list[str]) -> dict:
    from finsight.labels import LABEL2ID, LABELS, canonical_order, checkpoint_labels
    from finsight.metrics import macro_f1

    none = {"macro_f1_reference": None, "macro_f1_export": None, "macro_f1_change": None}
    if labels is None or checkpoint_labels(model_labels) is None:
        return none
    order = canonical_order(model_labels)
    truth = np.array([LABEL2ID[label] for label in labels])
    f1_ref = macro_f1(truth, ref[:, order].argmax(axis=1), len(LABELS))
    f1_exp = macro_f1(truth, exp[:, order].argmax(axis=1), len(LABELS))
    return {"macro_f1_reference": f1_ref, "macro_f1_export": f1_exp, "macro_f1_change": f1_exp - f1_ref}


def _worst(ref: np.ndarray, exp: np.ndarray, texts: Sequence[str]) -> dict[str, Any]:
    per_row = np.abs(ref - exp).max(axis=1)
    i = int(per_row.argmax())
    text = texts[i] if len(texts[i]) <= 120 else texts[i][:117] + "..."
    return {"row": i + 1, "abs_diff": float(per_row[i]), "text": text}


# ---------------------------------------------------------------- gates


def gate_specs(precision: str, cfg: ExportSettings) -> list[tuple[str, str, float, str]]:
    """(figure, rule, limit, config key) per precision: the one table of gates."""
    table = {
        "fp32": [("max_abs_diff", "<=", cfg.max_abs_diff, "export.max_abs_diff"),
                 ("agreement", ">=", cfg.min_agreement, "export.min_agreement")],
        "fp16": [("max_abs_diff", "<=", cfg.max_abs_diff_fp16, "export.max_abs_diff_fp16"),
                 ("agreement", ">=", cfg.min_agreement, "export.min_agreement")],
        "int8": [("agreement", ">=", cfg.int8_min_agreement, "export.int8_min_agreement"),
                 ("abs_macro_f1_change", "<=", cfg.int8_max_f1_change, "export.int8_max_f1_change")],
    }
    return table[precision]


def apply_gates(precision: str, output: dict[str, Any], cfg: ExportSettings) -> list[dict[str, Any]]:
    """Each gate with its value and verdict; ``passed`` is None when the figure is unavailable."""
    figures = dict(output)
    change = output.get("macro_f1_change")
    figures["abs_macro_f1_change"] = abs(change) if change is not None else None
    gates = []
    for figure, rule, limit, key in gate_specs(precision, cfg):
        value = figures.get(figure)
        passed = None if value is None else bool(value <= limit if rule == "<=" else value >= limit)
        gates.append({"name": figure, "value": value, "rule": rule, "limit": limit, "key": key,
                      "passed": passed, **({"note": "no labels in the validation data"}
                                           if value is None else {})})
    return gates


# ---------------------------------------------------------------- environment


def cpu_features() -> list[str]:
    """SIMD flags that decide int8/fp16 kernels (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return [flag for flag in _CPU_FLAGS if flag in flags]


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {}
    for package in ("torch", "transformers", "onnxruntime", "onnxruntime-gpu", "onnx"):
        try:
            found[package] = md.version(package)
        except md.PackageNotFoundError:
            continue
    return found
