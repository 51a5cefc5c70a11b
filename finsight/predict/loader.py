"""The backend registry and :func:`load_predictor`.

Each backend is a small class that says which artifact formats it runs and how to find one
for a given ref; ``load_predictor`` picks the backend (``auto`` included) and builds it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from finsight.errors import BackendError, FinsightWarning
from finsight.model.ref import Artifact, resolve_artifact, source_model
from finsight.predict.base import Predictor

if TYPE_CHECKING:
    from finsight.config import Settings


class Backend:
    """How one backend turns a resolved ref into a Predictor."""

    name: ClassVar[str]
    format: ClassVar[str]  # artifact format it runs

    def artifact_for(self, artifact: Artifact) -> Artifact:
        export = artifact.in_format(self.format)
        if export is not None:
            return export
        raise BackendError(f"the {self.name} backend needs a valid {self.format} export, and "
                           f"{artifact.location} is not one (nor has one beside it); run "
                           f"`finsight export {artifact.location} --format {self.format}` or pick "
                           "another --backend")

    def load(self, artifact: Artifact, settings: Settings) -> Predictor:
        """The predictor; each backend class gets only the settings sections it uses."""
        raise NotImplementedError


class TorchBackend(Backend):
    name, format = "torch", "hf"

    def artifact_for(self, artifact: Artifact) -> Artifact:
        return source_model(artifact) if artifact.is_export else artifact

    def load(self, artifact: Artifact, settings: Settings) -> Predictor:
        from finsight.predict.torch_backend import TorchPredictor

        return TorchPredictor(artifact, settings.predict, model=settings.model)


class OnnxBackend(Backend):
    name, format = "onnx", "onnx"

    def load(self, artifact: Artifact, settings: Settings) -> Predictor:
        from finsight.predict.onnx_backend import OnnxPredictor

        return OnnxPredictor(artifact, settings.predict, model=settings.model)


class TorchScriptBackend(Backend):
    name, format = "torchscript", "torchscript"

    def load(self, artifact: Artifact, settings: Settings) -> Predictor:
        from finsight.predict.torchscript_backend import TorchScriptPredictor

        return TorchScriptPredictor(artifact, settings.predict, model=settings.model)


class TritonBackend(Backend):
    name, format = "triton", "any"

    def artifact_for(self, artifact: Artifact) -> Artifact:
        return artifact  # only its tokenizer and labels are used here; the server runs the model

    def load(self, artifact: Artifact, settings: Settings) -> Predictor:
        from finsight.predict.triton_backend import TritonPredictor

        return TritonPredictor(artifact, settings.predict, model=settings.model, triton=settings.triton)


BACKENDS: dict[str, Backend] = {b.name: b for b in
                                (TorchBackend(), OnnxBackend(), TorchScriptBackend(), TritonBackend())}


def register_backend(backend: Backend) -> None:
    BACKENDS[backend.name] = backend


def load_predictor(ref: str | None, settings: Settings, backend: str | None = None) -> Predictor:
    """A Predictor for ``ref`` (model dir, export dir, hub id, ``models:/name@alias``).

    ``ref`` None means ``predict.model``, else ``model.name_or_path``; ``backend`` None means
    ``predict.backend``. ``auto`` runs an export dir with its own format; for a model dir it
    prefers a valid ONNX export beside it on CPU (int8 first) and torch on a GPU.
    """
    chosen, target = checked_artifact(ref, settings, backend)
    return chosen.load(target, settings)


def checked_artifact(ref: str | None, settings: Settings, backend: str | None = None) -> tuple[Backend, Artifact]:
    """The backend and the artifact :func:`load_predictor` would load, refused (not valid, files
    not those of its manifest) before any model is built: a parent process that only hands the
    model to workers checks it with this."""
    ref = ref or settings.predict.model or settings.model.name_or_path
    artifact = resolve_artifact(str(ref), settings)
    name = backend or settings.predict.backend
    chosen = _auto(artifact, settings) if name == "auto" else _named(name)
    target = chosen.artifact_for(artifact)
    target.require_valid(force=settings.predict.force)
    verify_artifact(target, settings)
    return chosen, target


def verify_artifact(artifact: Artifact, settings: Settings) -> None:
    """:meth:`Artifact.verify_files` with stamps under ``<workdir>/verified`` when the
    artifact's parent is read-only; ``predict.verify=false`` skips it with a FinsightWarning."""
    if artifact.path is None:
        return
    if not settings.predict.verify:
        warnings.warn(f"predict.verify=false: the files of {artifact.path} are not checked against "
                      "its finsight.json", FinsightWarning, stacklevel=2)
        return
    artifact.verify_files(stamp_dir=Path(settings.workdir) / "verified")


def _named(name: str) -> Backend:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}'; use auto or one of: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def _auto(artifact: Artifact, settings: Settings) -> Backend:
    if artifact.is_export:
        return _named(artifact.format)
    if not _on_gpu(settings.predict.device) and artifact.export_beside("onnx") is not None:
        return BACKENDS["onnx"]
    return BACKENDS["torch"]


def _on_gpu(device: str) -> bool:
    if device != "auto":
        return device.startswith("cuda")
    import torch

    return torch.cuda.is_available()
