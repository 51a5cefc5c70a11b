"""What a model ref points at: a model dir, an export dir, or a hub id; its labels and max_length."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finsight.artifacts import directory_sha256, failed_gates, read_manifest
from finsight.errors import ModelError
from finsight.labels import canonical_order
from finsight.registry.refs import REGISTRY_PREFIX

if TYPE_CHECKING:
    from finsight.config import Settings
    from finsight.data.recipe import CleaningRecipe


@dataclass
class Artifact:
    ref: str
    path: Path | None  # None: a hub id, resolved by transformers
    format: str  # "hf", "onnx", "torchscript"
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def is_export(self) -> bool:
        return self.manifest.get("kind") == "export"

    @property
    def location(self) -> str:
        return str(self.path) if self.path is not None else self.ref

    @property
    def model_file(self) -> Path:
        """The export's model file (the manifest's ``model_file``, else the format's default)."""
        from finsight.model.formats import FORMATS

        name = self.manifest.get("model_file") or FORMATS[self.format].model_file
        if self.path is None or not name:
            raise ModelError(f"{self.location} is not an export with a model file")
        path = self.path / name
        if not path.is_file():
            raise ModelError(f"{self.path}: the export manifest names {name}, which is missing; "
                             "re-run finsight export")
        return path

    @property
    def cleaning(self) -> "CleaningRecipe":
        """The cleaning recipe the model was trained with (``finsight.json`` ``cleaning``), or the
        default with ``assumed=True`` when none was recorded (a hub id, an older run)."""
        from finsight.data.recipe import CleaningRecipe

        recorded = self.manifest.get("cleaning")
        if recorded is None:
            return CleaningRecipe(assumed=True)
        try:
            return CleaningRecipe.from_dict(recorded)
        except ValueError as exc:
            raise ModelError(f"{self.location}: finsight.json cleaning: {exc}; re-run finsight train "
                             "(or export) with this finsight version") from None

    def max_length(self, default: int) -> int:
        return int(self.manifest.get("max_length") or default)

    def raw_labels(self) -> list[str]:
        """The artifact's label names in logit order."""
        if self.manifest.get("labels"):
            return [str(x) for x in self.manifest["labels"]]
        return _config_labels(self)

    def label_order(self) -> np.ndarray:
        """``order[j]``: the logit index of canonical label ``LABELS[j]``."""
        return canonical_order(self.raw_labels(), source=self.location)

    def require_valid(self, *, force: bool = False, forcible: bool = True) -> None:
        """Refuse an export whose validation failed, unless ``force``; ``forcible`` False (register)
        offers no way round it."""
        if not self.is_export or self.manifest.get("valid", False) or force:
            return
        report = self.manifest.get("validation") or {}
        reason = "; ".join(failed_gates(report)) if report.get("gates") else "no validation report"
        fix = ("re-export it, or pass --set predict.force=true to use it anyway" if forcible
               else "re-export it (an invalid export cannot be registered)")
        raise ModelError(f"export {self.path} failed its validation (finsight.json valid=false: {reason}); {fix}")

    def export_beside(self, fmt: str) -> "Artifact | None":
        """A valid ``fmt`` export of this model beside it (``<model>/../export-<fmt>*``); int8 first.

        Only exports whose ``source_sha256`` matches the model's current contents count, so a
        retrained model never silently runs an old export.
        """
        if self.path is None:
            return None
        candidates = []
        for directory in sorted(self.path.parent.glob(f"export-{fmt}*")):
            manifest = read_manifest(directory) or {}
            if manifest.get("kind") == "export" and manifest.get("format") == fmt and manifest.get("valid"):
                candidates.append((directory, manifest))
        if not candidates:
            return None
        digest = directory_sha256(self.path)
        matching = [(d, m) for d, m in candidates if m.get("source_sha256") == digest]
        matching.sort(key=lambda dm: dm[1].get("precision") != "int8")
        if not matching:
            return None
        directory, manifest = matching[0]
        return Artifact(ref=str(directory), path=directory.resolve(), format=fmt, manifest=manifest)

    def in_format(self, fmt: str) -> "Artifact | None":
        """This artifact when it is a ``fmt`` export, else (a model dir) the export beside it."""
        if self.format == fmt:
            return self
        return self.export_beside(fmt) if self.format == "hf" else None


def resolve_artifact(ref: str, settings: Settings | None = None) -> Artifact:
    """Classify ``ref``; ``models:/name@alias`` goes through the model registry (which needs
    ``settings`` for its store)."""
    if ref.startswith(REGISTRY_PREFIX):
        ref = _resolve_registry(ref, settings)
    path = Path(ref).expanduser()
    if path.is_dir():
        manifest = read_manifest(path) or {}
        if manifest.get("kind") == "export":
            return Artifact(ref=ref, path=path.resolve(), format=str(manifest.get("format")), manifest=manifest)
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is neither a model directory (no config.json) nor an export "
                             "directory (no finsight.json with kind=export); pass a trained model "
                             "dir, an export dir or a hub id")
        return Artifact(ref=ref, path=path.resolve(), format="hf", manifest=manifest)
    if path.exists():
        raise ModelError(f"model ref {ref} is a file; pass its directory (model or export dir)")
    if looks_like_path(ref):
        raise ModelError(f"model directory {ref} not found; check the path, or pass a hub id "
                         "(org/name) or models:/NAME@ALIAS")
    from finsight import hub

    hub.check_available(ref, settings.model.revision if settings is not None else None)
    return Artifact(ref=ref, path=None, format="hf")


def looks_like_path(ref: str) -> bool:
    """A ref that can only mean a directory: hub ids are ``name`` or ``org/name``."""
    return ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref


def _resolve_registry(ref: str, settings: Settings | None) -> str:
    """The local directory of a registered model version (the registry's job)."""
    if settings is None:
        raise ModelError(f"cannot resolve {ref} without settings: the registry's store is "
                         "registry.tracking_uri; pass the settings along with the ref")
    from finsight.registry import resolve_model_uri

    return str(resolve_model_uri(ref, settings))


def _config_labels(artifact: Artifact) -> list[str]:
    if artifact.path is not None:
        config_file = artifact.path / "config.json"
        if not config_file.is_file():
            raise ModelError(f"{artifact.path}: no labels in finsight.json and no config.json")
        config = json.loads(config_file.read_text(encoding="utf-8"))
        id2label = config.get("id2label") or {}
    else:
        from transformers import AutoConfig

        from finsight import hub

        try:
            id2label = AutoConfig.from_pretrained(artifact.ref, **hub.pretrained_kwargs()).id2label
        except (OSError, ValueError) as exc:
            raise hub.load_error(artifact.ref, exc) from None
    try:
        return [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        raise ModelError(f"{artifact.location}: config.json id2label keys are not integers") from None


def source_model(export: Artifact) -> Artifact:
    """The model an export was made from (for the torch backend on an export ref)."""
    source = export.manifest.get("source_model")
    if not source or not Path(source).is_dir():
        raise ModelError(f"{export.path}: the torch backend needs the source model, but the "
                         f"export's source_model ({source}) is missing; use --backend "
                         f"{export.format} or pass the model dir")
    return resolve_artifact(str(source))
