"""`finsight export`: ONNX (optimised, fp16, int8) and TorchScript artifacts, validated before they count.

Every artifact directory holds the model file, the tokenizer files, ``config.json`` (labels)
and a ``finsight.json`` manifest (see finsight/artifacts.py) with the validation report. An
export whose validation fails is still written, marked ``valid: false``, and
:func:`export_model` raises :class:`~finsight.errors.ExportValidationError`; loaders refuse it
(:meth:`finsight.model.Artifact.require_valid`) unless forced.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from finsight.artifacts import MANIFEST, check_output_dir, file_hashes, read_manifest, remove_stale, write_manifest
from finsight.errors import ExportValidationError
from finsight.export.onnx import OnnxExporter
from finsight.export.torchscript import TorchScriptExporter
from finsight.model import formats
from finsight.model.ref import REGISTRY_PREFIX
from finsight.paths import default_path, safe_name
from finsight.results import ExportResult

if TYPE_CHECKING:
    from finsight.config import Settings
    from finsight.export.source import Source

__all__ = ["EXPORTERS", "default_out_dir", "export_model"]

# The one table of formats: each knows its precision rules, how to build its file and how
# to run it back for validation.
EXPORTERS = {"onnx": OnnxExporter, "torchscript": TorchScriptExporter}


def export_model(
    model: str | Path,
    settings: Settings,
    *,
    on_step: Callable[[str], None] | None = None,
    on_report: Callable[[dict[str, Any]], None] | None = None,
) -> ExportResult:
    """Export ``model`` (a model dir, hub id or ``models:/`` ref) as ``settings.export`` says.

    ``on_report`` sees the manifest (with its validation report) once it is on disk, pass or
    fail; a failed gate then raises ExportValidationError naming the gate and the artifact.
    """
    from finsight.export.source import load_source
    from finsight.artifacts import failed_gates
    from finsight.export.validate import compare, validation_set
    from finsight.io import atomic_dir, check_writable

    cfg = settings.export
    exporter = EXPORTERS[cfg.format]()
    precision = exporter.precision(cfg)  # refuses bad option combinations before any work
    step = on_step or (lambda message: None)
    started = time.perf_counter()
    if cfg.out is not None:
        check_output_dir(Path(cfg.out), kind="export", what="export output", flag="--out (export.out)")
        check_writable(cfg.out)  # before minutes of loading and exporting
    step(f"loading {model}")
    source = load_source(model, settings)
    out = Path(cfg.out) if cfg.out is not None else default_out_dir(source, settings, cfg.format, precision)
    check_output_dir(out, kind="export", what="export output", flag="--out (export.out)")
    check_writable(out)
    data = validation_set(source, settings)  # bad validation data fails before the export
    with atomic_dir(out) as tmp:
        fields = exporter.build(source, tmp, cfg, step=step, data=data, data_settings=settings.data)
        precision = fields.pop("precision", precision)  # int8 search found nothing: fp32
        source.tokenizer.save_pretrained(tmp)
        source.model.config.save_pretrained(tmp)
        step(f"validating against PyTorch on {len(data.texts)} rows ({data.kind})")
        run, provider = exporter.runner(tmp / exporter.model_file, precision)
        report = compare(source, run, data, precision=precision, provider=provider, cfg=cfg)
        write_manifest(tmp, _manifest(source, exporter, precision, fields, report, tmp, started))
    manifest = read_manifest(out) | {"path": str(out.resolve())}
    remove_stale(out, manifest)
    if on_report is not None:
        on_report(manifest)
    if not report["passed"]:
        title = f"{formats.title(cfg.format)} {precision}"
        raise ExportValidationError(
            f"{title} export failed validation: {'; '.join(failed_gates(report))}; the artifact at "
            f"{out} is marked invalid (see {out / MANIFEST})", report)
    return ExportResult.from_manifest(manifest)


def default_out_dir(source: Source, settings: Settings, fmt: str, precision: str) -> Path:
    """``<model dir>/../export-<format>[-fp16|-int8]``; for a hub id or a ``models:/`` ref, under
    ``<workdir>/exports``."""
    suffix = "" if precision == "fp32" else f"-{precision}"
    if str(source.ref).startswith(REGISTRY_PREFIX):  # its path is the registry cache: not there
        return default_path(settings.workdir, "export", f"{safe_name(source.ref.removeprefix(REGISTRY_PREFIX))}-{fmt}{suffix}")
    if source.path is not None:
        return source.path.parent / f"export-{fmt}{suffix}"
    return default_path(settings.workdir, "export", f"{source.name}-{fmt}{suffix}")


def _manifest(source, exporter, precision: str, fields: dict[str, Any], report: dict[str, Any],
              directory: Path, started: float) -> dict[str, Any]:
    model_file = directory / exporter.model_file
    num_labels = len(source.labels)
    return {
        "kind": "export",
        "format": exporter.format,
        "precision": precision,
        "model_file": exporter.model_file,
        **fields,
        "inputs": [{"name": name, "dtype": "int64", "shape": ["batch", "sequence"]}
                   for name in source.input_names],
        "outputs": [{"name": formats.OUTPUT, "dtype": "float32", "shape": ["batch", num_labels]}],
        "labels": source.labels,
        "max_length": source.max_length,
        "cleaning": source.recorded_cleaning,
        "source_model": str(source.path) if source.path is not None else source.ref,
        "source_sha256": source.sha256,
        "files": file_hashes(directory),
        "size_mb": round(model_file.stat().st_size / 2**20, 3),
        "valid": bool(report["passed"]),
        "validation": report,
        "seconds": round(time.perf_counter() - started, 2),
    }


