"""What a model ref points at: a model dir, an export dir, or a hub id; its labels and max_length."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from finsight.artifacts import (DATA_CARD, MANIFEST, directory_sha256, failed_gates, file_changes, read_manifest,
                                stamp_beside)
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

    def verify_files(self, *, stamp_dir: Path | None = None) -> None:
        """Refuse an artifact whose files are not the ones its manifest lists (changed, missing
        or added), or whose manifest disagrees with them (:meth:`manifest_conflicts`).

        ``stamp_dir`` None hashes every file (register); else a file whose size, mtime, ctime and
        inode match the stamp of an earlier check is not hashed again (stamps live beside the
        artifact, or in ``stamp_dir`` when that is read-only).
        """
        if self.path is None:
            return  # a hub id: transformers and the hub cache own its files
        recorded = self.manifest.get("files")
        if recorded is not None:
            stamps = [stamp_beside(self.path), stamp_dir / f"{_path_key(self.path)}.json"] if stamp_dir else []
            changes = file_changes(self.path, recorded, stamps=stamps)
            problems = [f"{_CHANGE_WORDS[kind]}: {', '.join(sorted(names)[:5])}" for kind, names in changes.items()
                        if names]
            if problems:
                raise ModelError(f"{self.path}: files differ from the sha256 list in {MANIFEST} "
                                 f"({'; '.join(problems)}); the directory was modified after it was "
                                 "written: copy it again whole, or re-run the export (or training) "
                                 "that made it")
        conflicts = self.manifest_conflicts()
        if conflicts:
            raise ModelError(f"{self.path}: {MANIFEST} disagrees with the files it describes "
                             f"({'; '.join(conflicts)}); it belongs to another model or was edited: "
                             "re-run the export (or training) that made this directory")

    def manifest_conflicts(self) -> list[str]:
        """What the manifest records that its files contradict: labels or max_length vs
        config.json, the base model's architecture vs config.json (when the base model's
        config is at hand), the data card's sha256 vs a data card kept with the model."""
        if self.path is None or not self.manifest:
            return []
        config = _read_config(self.path)
        found = _label_conflict(self.manifest, config) + _length_conflict(self.manifest, config)
        found += _base_model_conflict(self.manifest.get("base_model"), config)
        return found + _data_card_conflict(self.path, self.manifest.get("data_card_sha256"))

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
        # Every auto start asks this (twice): the stamps the load check keeps spare re-hashing
        # the model's weights each time.
        digest = directory_sha256(self.path, stamps=[stamp_beside(self.path)])
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


_CHANGE_WORDS = {"changed": "changed", "missing": "missing", "added": "added, not in the manifest"}
# The shape of an encoder: a model built from a base keeps these; another base changes them.
_ARCHITECTURE = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads")


def _path_key(path: Path) -> str:
    import hashlib

    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def _read_config(directory: Path) -> dict[str, Any]:
    from finsight.io import read_json

    return read_json(directory / "config.json", strict=False)


def _label_conflict(manifest: dict[str, Any], config: dict[str, Any]) -> list[str]:
    id2label = config.get("id2label") or {}
    recorded = [str(x) for x in manifest.get("labels") or []]
    try:
        actual = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return []  # _config_labels names that problem when the labels are read
    if recorded and actual and recorded != actual:
        return [f"labels {recorded} vs config.json id2label {actual}"]
    return []


def _length_conflict(manifest: dict[str, Any], config: dict[str, Any]) -> list[str]:
    length, positions = manifest.get("max_length"), config.get("max_position_embeddings")
    if isinstance(length, int) and isinstance(positions, int) and length > positions:
        return [f"max_length {length} > config.json max_position_embeddings {positions}"]
    return []


def _base_model_conflict(base: str | None, config: dict[str, Any]) -> list[str]:
    base_config = _base_config(base) if base and config else {}
    differ = [f"{key} {base_config[key]} vs {config.get(key)}" for key in _ARCHITECTURE
              if key in base_config and base_config[key] != config.get(key)]
    if differ:
        return [f"base_model {base} has {', '.join(differ)} in config.json"]
    return []


def _base_config(base: str) -> dict[str, Any]:
    """The base model's config.json when it is here: a local dir, or a hub id in the HF cache
    (looked up without the network); {} otherwise ("tiny", a base not at hand)."""
    local = Path(base).expanduser()
    if local.is_dir():
        return _read_config(local)
    if looks_like_path(base):
        return {}  # a base dir that is gone
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(base, "config.json")
    except ValueError:
        return {}
    if not isinstance(cached, str):
        return {}
    from finsight.io import read_json

    return read_json(cached, strict=False)


def _data_card_conflict(directory: Path, recorded: str | None) -> list[str]:
    """A data card kept with the model (in its dir, or its train run dir) must be the one it
    was trained on."""
    from finsight.io import sha256_file

    if not recorded:
        return []
    for card in (directory / DATA_CARD, directory.parent / DATA_CARD):
        if card.is_file() and sha256_file(card) != recorded:
            return [f"data_card_sha256 {recorded[:12]}... vs {card} {sha256_file(card)[:12]}..."]
    return []


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
