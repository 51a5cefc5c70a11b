"""The `finsight.json` manifest that every model and export directory carries.

Train writes one into `<run>/model/`; export writes one into each artifact directory.
Loaders (evaluate, analyze, serve, Triton) read labels, max_length and validity from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

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


# Files that changed less than this long ago get no stamp: a write within the same timestamp
# tick as the stat could leave size, mtime and ctime as they were.
_RACY_NS = 2_000_000_000


def file_changes(directory: str | Path, recorded: dict[str, str], *,
                 stamps: Sequence[Path] = ()) -> dict[str, list[str]]:
    """How ``directory``'s files differ from the sha256 list ``recorded``: ``changed``,
    ``missing`` and ``added`` names (empty lists when they agree). ``stamps``: see
    :func:`stamped_hashes`; none hashes every file."""
    actual = stamped_hashes(directory, stamps) if stamps else file_hashes(directory)
    return {"changed": [n for n in recorded if n in actual and actual[n] != recorded[n]],
            "missing": [n for n in recorded if n not in actual],
            "added": [n for n in actual if n not in recorded]}


def stamp_beside(directory: Path) -> Path:
    """The stamp file of ``directory`` next to it (never inside: that would change its hashes)."""
    return directory.parent / f".{directory.name}.verified.json"


def stamped_hashes(directory: str | Path, stamps: Sequence[Path]) -> dict[str, str]:
    """:func:`file_hashes`, hashing again only files whose (size, mtime_ns, ctime_ns, inode)
    differ from what the first readable of ``stamps`` recorded; the new stamps are written to
    the first writable one (none writable: nothing is cached, every file is hashed).

    What a stamp trusts: that a write through the file system moves mtime or ctime (ctime
    cannot be set back by ``touch`` or ``os.utime``), and a copy gets a new inode. It cannot
    see bytes changed beneath the file system (media errors, a raw block device); the manifest
    is no signature either: whoever can write the files can write it.
    """
    import time

    root = Path(directory)
    key = str(root.resolve())
    known = _read_stamps(stamps, key)
    hashes: dict[str, str] = {}
    fresh: dict[str, list] = {}
    now = time.time_ns()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name == MANIFEST:
            continue
        name, stat = str(path.relative_to(root)), path.stat()
        meta = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        entry = known.get(name)
        hashes[name] = entry[4] if entry and entry[:4] == meta else sha256_file(path)
        if now - max(stat.st_mtime_ns, stat.st_ctime_ns) > _RACY_NS:
            fresh[name] = [*meta, hashes[name]]
    if fresh != known:
        _write_stamps(stamps, {"directory": key, "files": fresh})
    return hashes


def _read_stamps(stamps: Sequence[Path], key: str) -> dict[str, list]:
    from finsight.io import read_json

    for path in stamps:
        payload = read_json(path, strict=False)  # a broken stamp file is only a cold start
        if payload.get("directory") == key and isinstance(payload.get("files"), dict):
            return payload["files"]
    return {}


def _write_stamps(stamps: Sequence[Path], payload: dict[str, Any]) -> None:
    from finsight.errors import OutputError

    for path in stamps:
        try:
            atomic_write_json(path, payload)
            return
        except (OSError, OutputError):
            continue  # read-only mount: try the next place, else keep hashing every start


def directory_sha256(directory: str | Path, *, stamps: Sequence[Path] = ()) -> str:
    """One digest for a whole directory (names and contents), e.g. a source model; ``stamps``
    as :func:`stamped_hashes` takes them (none: every file hashed)."""
    import hashlib

    digest = hashlib.sha256()
    hashes = stamped_hashes(directory, stamps) if stamps else file_hashes(directory)
    for name, sha in hashes.items():
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
