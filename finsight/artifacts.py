"""The `finsight.json` manifest that every model and export directory carries.

Train writes one into `<run>/model/`; export writes one into each artifact directory.
Loaders (evaluate, analyze, serve, Triton) read labels, max_length and validity from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finsight import __version__
from finsight.io import atomic_write_json, sha256_file

MANIFEST = "finsight.json"
DATA_CARD = "data_card.json"  # written by prep beside the splits


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The manifest of ``directory``, or None for a plain HF directory without one."""
    import json

    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> Path:
    path = Path(directory) / MANIFEST
    atomic_write_json(path, {"finsight_version": __version__, **manifest})
    return path


def file_hashes(directory: str | Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` except the manifest itself."""
    root = Path(directory)
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def directory_sha256(directory: str | Path) -> str:
    """One digest for a whole directory (names and contents), e.g. a source model."""
    import hashlib

    digest = hashlib.sha256()
    for name, sha in file_hashes(directory).items():
        digest.update(f"{name}\0{sha}\n".encode())
    return digest.hexdigest()


def check_output_dir(out: Path, *, kind: str, what: str, flag: str) -> None:
    """Refuse to write into ``out`` unless it is missing, empty, or a ``kind`` artifact finsight
    wrote before (which a rebuild replaces)."""
    from finsight.errors import ConfigError

    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{what} {out} is a file; pass a directory to {flag}")
    manifest = read_manifest(out) or {}
    if any(out.iterdir()) and manifest.get("kind") != kind:
        raise ConfigError(f"{what} {out} exists and was not written by finsight; pass another "
                          f"{flag} or remove it")


def remove_stale(out: Path, manifest: dict[str, Any], *, keep_dirs: Any = lambda path: False) -> None:
    """Rebuilding over an old artifact: drop the files (and emptied dirs) the new one did not
    write, except directories ``keep_dirs`` says to keep."""
    keep = set(manifest["files"]) | {MANIFEST}
    for path in sorted(out.rglob("*"), reverse=True):
        name = str(path.relative_to(out))
        if path.is_file() and name not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()) and not keep_dirs(path):
            path.rmdir()


def failed_gates(report: dict[str, Any]) -> list[str]:
    """One phrase per failed gate of a validation report (a manifest's ``validation``),
    e.g. ``agreement 0.962 < 0.99 (export.int8_min_agreement)``."""
    opposite = {"<=": ">", ">=": "<"}
    return [f"{g['name'].replace('_', ' ')} {g['value']:.4g} {opposite[g['rule']]} {g['limit']:.4g} "
            f"({g['key']})" for g in report["gates"] if g["passed"] is False]
