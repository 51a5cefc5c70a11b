"""``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` -> a local artifact directory.

Every command that takes a model reaches this through :func:`finsight.model.resolve_artifact`.
An alias is looked up in the registry on every call (aliases move); the version's files are
downloaded once into ``registry.cache`` (default ``<workdir>/registry-cache``), keyed by store,
name and version, checked against the sha256 recorded at registration, and written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finsight.artifacts import directory_sha256
from finsight.errors import ConfigError, RegistryError
from finsight.io import read_json
from finsight.paths import safe_name
from finsight.registry import store
from finsight.registry.refs import parse_ref
from finsight.registry.versions import TAG, find_version
from finsight.results import PullResult

if TYPE_CHECKING:
    from finsight.config import Settings

MODEL_DIR = "model"
INFO_FILE = "version.json"


def resolve_model_uri(ref: str, settings: Settings) -> Path:
    """The local directory (model or export dir) of the registered version ``ref`` names."""
    return resolve(ref, settings)[0]


def resolve(ref: str, settings: Settings) -> tuple[Path, dict[str, Any]]:
    """The local directory and its ``version.json`` (name, version, sha256, tracking URI)."""
    name, alias, number = parse_ref(ref)
    uri = settings.tracking_uri()
    with store.mlflow_env(f"resolve {ref}", instead="pass a model or export directory"):
        client = store.open_client(settings)
        version = find_version(client, name, alias=alias, version=number, uri=uri)
        tags = version.tags or {}
        if f"{TAG}artifact_path" not in tags or f"{TAG}sha256" not in tags:
            raise RegistryError(f"{ref} (version {version.version} of '{name}') was not registered by "
                                "`finsight register` (no finsight.* tags); register a model or export "
                                "directory with it, or pass a local directory")
        target = cache_dir(settings, uri, name, version.version)
        info = read_json(target / INFO_FILE, strict=False)
        if info.get("sha256") != tags[f"{TAG}sha256"] or not (target / MODEL_DIR).is_dir():
            info = _download(client, version, target, uri=uri)
    return target / MODEL_DIR, info


def cache_dir(settings: Settings, uri: str, name: str, version: str | int) -> Path:
    root = Path(settings.registry.cache) if settings.registry.cache else Path(settings.workdir) / "registry-cache"
    store_key = hashlib.sha256(uri.encode()).hexdigest()[:12]
    safe = safe_name(name)
    if safe != name:
        safe = f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return root / store_key / safe / str(version)


def _download(client, version, target: Path, *, uri: str) -> dict[str, Any]:
    """Fetch the version's artifact directory into ``target`` whole, or leave ``target`` as it was."""
    import mlflow.artifacts

    tags = version.tags
    source = client.get_model_version_download_uri(version.name, version.version)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        try:
            with store.fluent_uri(uri):
                fetched = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{source.rstrip('/')}/{tags[TAG + 'artifact_path']}",
                    dst_path=str(tmp / "download"), tracking_uri=uri)
        except Exception as exc:  # noqa: BLE001  (MlflowException, HTTP and OS errors)
            raise store.mlflow_error(f"download version {version.version} of '{version.name}'", uri, exc) from None
        os.replace(fetched, tmp / MODEL_DIR)
        shutil.rmtree(tmp / "download", ignore_errors=True)
        digest = directory_sha256(tmp / MODEL_DIR)
        if digest != tags[TAG + "sha256"]:
            raise RegistryError(f"the files of version {version.version} of '{version.name}' at {uri} "
                                f"do not match the sha256 recorded when it was registered; the store "
                                "was changed: register the model again")
        info = {"name": version.name, "version": int(version.version), "sha256": digest,
                "tracking_uri": uri, "source": source, "format": tags.get(TAG + "format")}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        _swap(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def _swap(new: Path, target: Path) -> None:
    """Replace ``target`` with ``new`` by renames, so a reader never sees half a directory."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def pull_model(ref: str, settings: Settings, *, out: str | Path) -> PullResult:
    """Copy the registered version ``ref`` names into ``out`` (a usable model or export dir)."""
    from finsight.io import atomic_dir

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} exists and is not an empty directory; pass a new directory")
    local, info = resolve(ref, settings)
    with atomic_dir(out) as tmp:
        shutil.copytree(local, tmp, dirs_exist_ok=True)
    return PullResult.from_info(info, ref=ref, out=out.resolve())
