"""What a registry reference looks like, and which aliases MLflow allows: rules the read side
(resolve, alias) and the write side (register) share, so they live below both."""

from __future__ import annotations

import re
from typing import Sequence

from finsight.errors import RegistryError

REGISTRY_PREFIX = "models:/"
_REF = re.compile(r"^models:/(?P<name>[^@/]+?)(?:@(?P<alias>[^@/]+)|/(?P<version>[^@/]+))$")
_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$")


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` -> (name, alias, None); ``models:/NAME/VERSION`` -> (name, None, version)."""
    match = _REF.match(ref.strip())
    if not match or (match["version"] is not None and not match["version"].isdigit()):
        raise RegistryError(f"'{ref}' is not a registry reference; use {REGISTRY_PREFIX}NAME@ALIAS "
                            f"(e.g. {REGISTRY_PREFIX}finsight-sentiment@champion) or "
                            f"{REGISTRY_PREFIX}NAME/VERSION")
    return match["name"], match["alias"], match["version"]


def check_aliases(aliases: Sequence[str]) -> None:
    for alias in aliases:
        if not _ALIAS.match(alias) or _RESERVED_ALIAS.match(alias):
            raise RegistryError(f"alias '{alias}' is not allowed: use letters, digits, _ and - "
                                "(not 'latest' or v<number>, which MLflow reserves), e.g. champion")
