"""The predictor settings ``finsight serve`` runs with, decided once, before the predictor is built."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finsight.config import Settings


def for_serving(settings: Settings) -> Settings:
    """``settings`` with the predictor defaults that suit a server, for the keys the user left unset.

    - ``predict.spin_wait`` False: ONNX Runtime threads that spin while idle would take the
      cores the event loop needs.
    - ``predict.batch_size`` = ``serve.model_batch_size`` on CPU: a micro-batch mixes lengths;
      the predictor sorts it and pads per sub-batch, so small sub-batches pad less (measured
      1.6x faster for 32 random headlines, MiniLM int8). A GPU keeps its own default.
    - ``triton.timeout_s`` = ``serve.request_timeout_s``: past the deadline nobody waits for
      the answer, and a Triton server that hangs should fail calls (and open the circuit
      breaker) at that pace, not hold the model thread for the client's 30 s.
    """
    predict: dict[str, object] = {}
    if settings.sources.get("predict.spin_wait", "default") == "default":
        predict["spin_wait"] = False
    if settings.predict.batch_size is None and not _on_gpu(settings):
        predict["batch_size"] = settings.serve.model_batch_size
    update: dict[str, object] = {"predict": settings.predict.model_copy(update=predict)} if predict else {}
    if settings.sources.get("triton.timeout_s", "default") == "default":
        update["triton"] = settings.triton.model_copy(update={"timeout_s": settings.serve.request_timeout_s})
    return settings.model_copy(update=update) if update else settings


def _on_gpu(settings: Settings) -> bool:
    """Whether the predictor will run on a GPU, by the rules its backend applies; loads nothing."""
    opts = settings.predict
    backend = opts.backend
    if backend == "auto":  # an export dir runs with its own format; a model dir or hub id on torch
        backend = _export_format(str(opts.model or settings.model.name_or_path), settings) or "torch"
    if backend == "triton":
        return False  # the Triton server runs the model; this process only batches texts for it
    if opts.device != "auto":
        return opts.device.startswith("cuda")
    if backend == "onnx":
        return _onnx_gpu()
    try:
        from finsight.predict.base import torch_device

        return torch_device("auto") != "cpu"
    except ImportError:  # an install without torch (deploy/docker's CPU image) runs ONNX only
        return _onnx_gpu()


def _export_format(ref: str, settings: Settings) -> str | None:
    """The export format ``ref`` names, None for a model dir or hub id. A ``models:/`` ref is
    looked up (its files are cached, so loading it next costs one more alias lookup): guessing
    torch for it would import torch (~2 s) in a server that runs an ONNX export."""
    from finsight.artifacts import read_manifest
    from finsight.model.ref import resolve_artifact
    from finsight.registry import REGISTRY_PREFIX

    if ref.startswith(REGISTRY_PREFIX):
        artifact = resolve_artifact(ref, settings)
        return artifact.format if artifact.is_export else None
    path = Path(ref).expanduser()
    manifest = (read_manifest(path) or {}) if path.is_dir() else {}
    return str(manifest["format"]) if manifest.get("kind") == "export" else None


def _onnx_gpu() -> bool:
    from finsight.predict.onnx_backend import CUDA, providers

    try:
        return providers("auto")[0] == CUDA
    except ImportError:  # no onnxruntime: whatever loads will say so
        return False
