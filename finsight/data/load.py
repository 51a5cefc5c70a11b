"""Read every prep input into one frame: text, canonical label, kept columns, split.

Columns of the result: ``text``, ``label`` (canonical name), the ``data.keep_columns``,
``_split`` (``train``/``validation``/``test`` for pre-split inputs, else None), ``_source``
(input index) and ``_line`` (line or row in that input, for messages).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from finsight.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from finsight.config import DataSettings

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation",
                 "valid": "validation", "val": "validation", "dev": "validation", "test": "test"}


@dataclass(frozen=True)
class Source:
    """One input: a file, a saved dataset dir or a hub name; ``split`` when pre-split."""

    path: str
    split: str | None = None


def sources_from(inputs: Sequence[str], data: "DataSettings") -> list[Source]:
    """The inputs of a run: positional files, or ``data.split_from_files`` (not both)."""
    if inputs and data.split_from_files:
        raise ConfigError("give INPUT files or --split-from-files (data.split_from_files), not both")
    if data.split_from_files:
        return [Source(str(path), split_name(name, where="data.split_from_files"))
                for name, path in data.split_from_files.items()]
    if not inputs:
        raise ConfigError("no input: pass INPUT files, or --split-from-files train=FILE ...")
    return [Source(str(path)) for path in inputs]


def split_name(name: str, *, where: str) -> str:
    canonical = SPLIT_ALIASES.get(str(name).strip().lower())
    if canonical is None:
        raise ConfigError(f"{where}: unknown split '{name}'; use {', '.join(SPLITS)}")
    return canonical


def read_inputs(sources: Sequence[Source], data: "DataSettings") -> tuple["pd.DataFrame", list[dict]]:
    """All inputs as one frame, and one data-card record per input."""
    import pandas as pd

    frames, records = [], []
    for index, source in enumerate(sources):
        frame, record = _read_one(source, data)
        frames.append(frame.assign(_source=index))
        records.append(record)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return frame.reset_index(drop=True), records


def _read_one(source: Source, data: "DataSettings") -> tuple["pd.DataFrame", dict]:
    from finsight.io import detect_format, list_columns, read_table
    from finsight.labels import map_labels

    fmt = detect_format(source.path, data.format)
    available = list_columns(source.path, format=fmt, encoding=data.encoding)
    text_col, label_col, keep = _columns(available, source.path, data)
    dataset_dict = fmt == "hf" and _is_dataset_dict(source.path)
    wanted = [text_col, label_col, *keep] + (["split"] if dataset_dict else [])
    raw = read_table(source.path, format=fmt, columns=wanted, chunk_rows=65536, encoding=data.encoding)
    labels, label_values = map_labels(raw[label_col], data.label_map, source=str(source.path),
                                      flag="--label-map")
    frame = raw[keep].copy()
    frame.insert(0, "text", raw[text_col].array)
    frame.insert(1, "label", labels.array)
    frame["_split"] = _splits(raw, source, dataset_dict)
    frame["_line"] = raw["_line"].array
    return frame, _record(source, fmt, data, raw, text_col, label_col, label_values)


def _columns(available: Sequence[str], path: str, data: "DataSettings") -> tuple[str, str, list[str]]:
    from finsight.io import LABEL_COLUMNS, TEXT_COLUMNS, resolve_column

    text_col = resolve_column(available, data.text_column, TEXT_COLUMNS, path=path, role="text",
                              flag="--text-column")
    label_col = resolve_column(available, data.label_column, LABEL_COLUMNS, path=path, role="label",
                               flag="--label-column")
    if text_col == label_col:
        raise DataError(f"{path}: column '{text_col}' cannot be both the text and the label column")
    keep = [resolve_column(available, name, (), path=path, role="kept", flag="--keep-column")
            for name in data.keep_columns]
    clash = [name for name in keep if name in (text_col, label_col, "text", "label")]
    if clash:
        raise DataError(f"{path}: --keep-column '{clash[0]}' is the text or label column; "
                        "the splits always hold text and label")
    return text_col, label_col, keep


@dataclass
class LabeledTexts:
    """The texts of one file and, when it has a label column, their canonical labels."""

    texts: list[str]
    labels: list[str] | None
    source: str  # the resolved path


def read_labeled(path: str | Path, data: "DataSettings", *, require_labels: bool) -> LabeledTexts:
    """Texts (and labels) of one file, for evaluate and export validation.

    The label column is required with ``require_labels``, else used when present. An empty
    text is an error naming its row: these files are measured, not cleaned (prep cleans).
    """
    from finsight.io import LABEL_COLUMNS, LINE, TEXT_COLUMNS, detect_format, list_columns, read_table, resolve_column
    from finsight.labels import to_canonical

    path = Path(path)
    fmt = detect_format(path, data.format)
    columns = list_columns(path, format=fmt, encoding=data.encoding)
    text = resolve_column(columns, data.text_column, TEXT_COLUMNS, path=path, role="text",
                          flag="--set data.text_column=")
    if require_labels or data.label_column is not None:
        label = resolve_column(columns, data.label_column, LABEL_COLUMNS, path=path, role="label",
                               flag="--set data.label_column=")
    else:
        lowered = {c.lower(): c for c in columns}
        label = next((lowered[name] for name in LABEL_COLUMNS if name in lowered), None)
    frame = read_table(path, format=fmt, encoding=data.encoding, columns=[c for c in (text, label) if c])
    empty = frame[text].isna() | (frame[text].astype(str).str.strip() == "")
    if empty.any():
        line = int(frame.loc[empty, LINE].iloc[0])
        raise DataError(f"{path}: row {line} has an empty '{text}'; remove such rows or clean the "
                        "file with `finsight prep`")
    labels = None
    if label is not None:
        labels = to_canonical(frame[label], data.label_map, source=str(path),
                              flag="--set data.label_map").tolist()
    return LabeledTexts(frame[text].astype(str).tolist(), labels, str(path.resolve()))


def _is_dataset_dict(path: str) -> bool:
    # A hub dataset loads as a DatasetDict too; a saved one says so on disk.
    return (Path(path) / "dataset_dict.json").exists() or not Path(path).exists()


def _splits(raw: "pd.DataFrame", source: Source, dataset_dict: bool) -> Any:
    if not dataset_dict:
        return source.split
    names = {name: split_name(name, where=f"{source.path}: dataset split")
             for name in raw["split"].unique()}
    return raw["split"].map(names).array


def _record(source: Source, fmt: str, data: "DataSettings", raw: "pd.DataFrame", text_col: str,
            label_col: str, label_values: dict) -> dict:
    encoding = None
    if fmt not in ("parquet", "hf"):
        encoding = data.encoding or ("latin-1" if fmt == "phrasebank" else "utf-8")
    return {"path": _display_path(source.path), "format": fmt, "sha256": _sha256(source.path),
            "split": source.split, "rows": len(raw), "text_column": text_col,
            "label_column": label_col, "encoding": encoding, "label_values": label_values}


def _display_path(path: str) -> str:
    return str(Path(path).resolve()) if Path(path).exists() else path


def _sha256(path: str) -> str | None:
    from finsight.artifacts import directory_sha256
    from finsight.io import sha256_file

    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    return directory_sha256(p) if p.is_dir() else None


def input_stem(source: Source) -> str:
    """The default output name: the first input's file stem (``owner/name`` -> ``name``)."""
    path = Path(source.path.rstrip("/"))
    return (path.stem if path.is_file() else path.name) or "dataset"
