"""Registered models, their versions and aliases: list them, find one, move an alias."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from finsight.errors import RegistryError
from finsight.registry import store
from finsight.registry.refs import REGISTRY_PREFIX, check_aliases
from finsight.results import AliasResult, ModelVersion

if TYPE_CHECKING:
    from finsight.config import Settings

TAG = "finsight."


def find_version(client, name: str, *, alias: str | None = None, version: str | None = None, uri: str):
    """The ModelVersion for an alias or a version number; a miss lists what exists."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise RegistryError(f"no registered model '{name}' at {uri}; registered models: "
                            f"{', '.join(names) or 'none (run finsight register MODEL)'}") from None
    if alias is not None:
        aliases = dict(model.aliases or {})
        if alias not in aliases:
            have = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
            raise RegistryError(f"model '{name}' has no alias '{alias}'; its aliases: {have} (move one "
                                f"with `finsight models alias {name} VERSION {alias}`)")
        version = str(aliases[alias])
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        have = sorted(int(v.version) for v in client.search_model_versions(f"name='{_quoted(name)}'"))
        raise RegistryError(f"model '{name}' has no version {version}; its versions: "
                            f"{', '.join(map(str, have)) or 'none'}") from None


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")


def list_versions(settings: Settings, *, name: str | None = None) -> list[ModelVersion]:
    """One row per version (newest first within a name): aliases, format, checks, metrics, time."""
    uri = settings.tracking_uri()
    with store.mlflow_env("list registered models"):
        client = store.open_client(settings)
        try:
            models = [client.get_registered_model(name)] if name else client.search_registered_models()
        except Exception as exc:  # noqa: BLE001
            if name:
                find_version(client, name, version="1", uri=uri)  # lists the names that exist
            raise store.mlflow_error("list registered models", uri, exc) from None
        rows = []
        for model in sorted(models, key=lambda m: m.name):
            aliases: dict[str, list[str]] = {}
            for alias, version in (model.aliases or {}).items():
                aliases.setdefault(str(version), []).append(alias)
            versions = client.search_model_versions(f"name='{_quoted(model.name)}'")
            for version in sorted(versions, key=lambda v: -int(v.version)):
                rows.append(version_row(version, sorted(aliases.get(str(version.version), []))))
    return rows


def version_row(version, aliases: list[str]) -> ModelVersion:
    tags = {k.removeprefix(TAG): v for k, v in (version.tags or {}).items() if k.startswith(TAG)}
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=timezone.utc)
    return ModelVersion(
        name=version.name, version=int(version.version), aliases=aliases,
        format=tags.get("format"), precision=tags.get("precision"), kind=tags.get("kind"),
        valid=tags.get("valid"), labels=tags.get("labels"),
        validation=_group(tags, "validation."), train=_group(tags, "train."),
        eval=_group(tags, "eval."), created=created.isoformat(timespec="seconds"),
        run_id=version.run_id, source=tags.get("source"), sha256=tags.get("sha256"),
        model_uri=f"{REGISTRY_PREFIX}{version.name}/{version.version}",
    )


def _group(tags: dict[str, str], prefix: str) -> dict[str, str]:
    return {k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix)}


def set_alias(name: str, settings: Settings, *, version: int | str, alias: str) -> AliasResult:
    """Point ``alias`` at ``version`` of registered model ``name`` (roll back by pointing it back)."""
    check_aliases([alias])
    uri = settings.tracking_uri()
    with store.mlflow_env(f"set alias '{alias}' of '{name}'"):
        client = store.open_client(settings)
        target = find_version(client, name, version=str(version), uri=uri)
        previous = dict(client.get_registered_model(name).aliases or {}).get(alias)
        try:
            client.set_registered_model_alias(name, alias, target.version)
        except Exception as exc:  # noqa: BLE001
            raise store.mlflow_error(f"set alias '{alias}' of '{name}'", uri, exc) from None
    return AliasResult(name=name, alias=alias, version=int(target.version),
                       previous=int(previous) if previous is not None else None,
                       model_uri=f"{REGISTRY_PREFIX}{name}@{alias}")
