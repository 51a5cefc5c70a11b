"""Streaming readers and atomic writers for CSV/TSV/JSONL/JSON/Parquet/PhraseBank/HF datasets.

Readers yield pandas DataFrame chunks so memory stays flat with file size; every chunk
carries a ``_line`` column (1-based line or row number in the file) so errors can name
the row. Writers write to a temporary file beside the target and rename on success, so a
failed run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from finsight.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

LINE = "_line"
FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "phrasebank", "hf")
WRITE_FORMATS = ("csv", "tsv", "jsonl", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


# ---------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp dir beside ``path``; its files land in ``path`` only if the block succeeds.

    A new ``path`` appears whole (one rename). An existing one has each new file replaced
    in turn; files it had that the run did not write are kept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
            return
        for item in sorted(tmp.rglob("*")):
            target = path / item.relative_to(tmp)
            if item.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- format detection


def detect_format(path: str | os.PathLike, declared: str = "auto") -> str:
    """The reader for ``path``: the declared format, else by suffix, else by content."""
    if declared != "auto":
        if declared not in FORMATS:
            raise DataError(f"unknown format '{declared}'; use one of: auto, {', '.join(FORMATS)}")
        return declared
    path = Path(path)
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return "hf"
        raise DataError(f"{path} is a directory but not a saved Hugging Face dataset "
                        "(no dataset_info.json or dataset_dict.json)")
    if not path.exists():
        if _looks_like_hub_id(str(path)):
            return "hf"
        raise DataError(f"input file {path} not found")
    if path.suffix.lower() in _SUFFIXES:
        return _SUFFIXES[path.suffix.lower()]
    return _sniff(path)


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/")) and "." not in parts[1][:1]


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(64 * 1024)
    if not head.strip():
        raise DataError(f"input file {path} is empty")
    text = head.decode("latin-1")
    first = text.lstrip()[:1]
    if first == "[":
        return "json"
    if first == "{":
        return "jsonl"
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if lines and all("@" in ln for ln in lines[:-1] or lines):
        return "phrasebank"
    if "\t" in lines[0]:
        return "tsv"
    return "csv"


# ---------------------------------------------------------------- readers


def iter_chunks(
    path: str | os.PathLike,
    *,
    format: str = "auto",
    columns: Sequence[str] | None = None,
    chunk_rows: int = 8192,
    encoding: str | None = None,
) -> Iterator["pd.DataFrame"]:
    """Yield DataFrame chunks of at most ``chunk_rows`` rows, each with a ``_line`` column.

    ``columns`` limits what is read (the check that they exist is the caller's, via
    :func:`resolve_column`, which can list the columns the file has).
    """
    fmt = detect_format(path, format)
    path = Path(path)
    if fmt != "hf" and path.is_file() and path.stat().st_size == 0:
        raise DataError(f"input file {path} is empty")
    reader = _READERS[fmt]
    produced = False
    try:
        for chunk in reader(path, columns=columns, chunk_rows=chunk_rows, encoding=encoding):
            if len(chunk):
                produced = True
                yield chunk
    except UnicodeDecodeError as exc:
        enc = encoding or "utf-8"
        raise DataError(
            f"{path} is not valid {enc} (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "it is probably latin-1/cp1252: pass --set data.encoding=latin-1 "
            "(or predict.encoding for analyze), or re-save the file as UTF-8") from None
    if not produced:
        raise DataError(f"input file {path} has no data rows")


def read_table(path: str | os.PathLike, **kwargs: Any) -> "pd.DataFrame":
    """The whole file as one DataFrame (for inputs that fit in memory, e.g. training data)."""
    import pandas as pd

    chunks = list(iter_chunks(path, **kwargs))
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0].reset_index(drop=True)


def list_columns(path: str | os.PathLike, *, format: str = "auto", encoding: str | None = None) -> list[str]:
    """Column names of a file, read from its first chunk (cheap)."""
    fmt = detect_format(path, format)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    first = next(iter_chunks(path, format=fmt, chunk_rows=256, encoding=encoding))
    return [c for c in first.columns if c != LINE]


def resolve_column(
    available: Sequence[str],
    requested: str | None,
    candidates: Sequence[str],
    *,
    path: str | os.PathLike,
    role: str,
    flag: str,
) -> str:
    """Pick the ``role`` column: the requested one, else the first common name present."""
    import difflib

    available = [c for c in available if c != LINE]
    if requested is not None:
        if requested in available:
            return requested
        hint = difflib.get_close_matches(requested, available, n=1)
        maybe = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise DataError(f"{path}: no {role} column '{requested}'{maybe}; "
                        f"the file has columns: {', '.join(available)}")
    lowered = {c.lower(): c for c in available}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    raise DataError(f"{path}: cannot find a {role} column (tried {', '.join(candidates)}); "
                    f"the file has columns: {', '.join(available)}; pass {flag} COLUMN")


def _read_delimited(sep: str):
    def read(path: Path, *, columns, chunk_rows, encoding) -> Iterator["pd.DataFrame"]:
        import pandas as pd

        usecols = (lambda c: c in set(columns)) if columns else None
        try:
            reader = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                                 chunksize=chunk_rows, encoding=encoding or "utf-8",
                                 usecols=usecols, on_bad_lines="error")
            start = 2  # line 1 is the header
            for chunk in reader:
                chunk[LINE] = range(start, start + len(chunk))
                start += len(chunk)
                yield chunk
        except pd.errors.EmptyDataError:
            raise DataError(f"input file {path} is empty (no header row)") from None
        except pd.errors.ParserError as exc:
            raise DataError(f"{path}: malformed {'TSV' if sep == chr(9) else 'CSV'}: {exc}".strip()) from None

    return read


def _read_jsonl(path: Path, *, columns, chunk_rows, encoding) -> Iterator["pd.DataFrame"]:
    import pandas as pd

    records: list[dict] = []
    lines: list[int] = []
    with open(path, encoding=encoding or "utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg} at column "
                                f"{exc.colno}); fix or remove that line") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {number} is a JSON {type(record).__name__}, "
                                "expected an object per line")
            records.append({k: record.get(k) for k in columns} if columns else record)
            lines.append(number)
            if len(records) >= chunk_rows:
                yield pd.DataFrame.from_records(records).assign(**{LINE: lines})
                records, lines = [], []
    if records:
        yield pd.DataFrame.from_records(records).assign(**{LINE: lines})


def _read_json(path: Path, *, columns, chunk_rows, encoding) -> Iterator["pd.DataFrame"]:
    import pandas as pd

    try:
        with open(path, encoding=encoding or "utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                        f"column {exc.colno})") from None
    if isinstance(data, dict):  # {"data": [...]} style wrappers
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a JSON array of objects (or one object holding "
                            "exactly one array)")
        data = lists[0]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a JSON array of objects")
    for start in range(0, len(data), chunk_rows):
        part = data[start:start + chunk_rows]
        frame = pd.DataFrame.from_records([{k: r.get(k) for k in columns} if columns else r for r in part])
        yield frame.assign(**{LINE: range(start + 1, start + 1 + len(part))})


def _read_parquet(path: Path, *, columns, chunk_rows, encoding) -> Iterator["pd.DataFrame"]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: not a valid Parquet file ({exc})") from None
    wanted = [c for c in columns if c in handle.schema_arrow.names] if columns else None
    start = 1
    for batch in handle.iter_batches(batch_size=chunk_rows, columns=wanted):
        frame = batch.to_pandas()
        frame[LINE] = range(start, start + len(frame))
        start += len(frame)
        yield frame


def _read_phrasebank(path: Path, *, columns, chunk_rows, encoding) -> Iterator["pd.DataFrame"]:
    """Financial PhraseBank: ``sentence@label`` per line, latin-1, CRLF; split on the last @."""
    import pandas as pd

    texts: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    with open(path, encoding=encoding or "latin-1", newline=None) as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            text, sep, label = line.rpartition("@")
            if not sep:
                raise DataError(f"{path}: line {number} has no '@label' suffix "
                                "(PhraseBank lines are 'sentence@label')")
            texts.append(text)
            labels.append(label.strip())
            lines.append(number)
            if len(texts) >= chunk_rows:
                yield pd.DataFrame({"text": texts, "label": labels, LINE: lines})
                texts, labels, lines = [], [], []
    if texts:
        yield pd.DataFrame({"text": texts, "label": labels, LINE: lines})


def _read_hf(path: Path, *, columns, chunk_rows, encoding) -> Iterator["pd.DataFrame"]:
    """A saved dataset (``load_from_disk``) or, when online, a hub dataset name.

    A DatasetDict yields every split with a ``split`` column naming it.
    """
    import datasets

    try:
        if Path(path).exists():
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(str(path))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: cannot load the Hugging Face dataset ({exc})") from None
    except (ConnectionError, OSError) as exc:
        raise DataError(f"{path}: dataset not on disk and the Hugging Face Hub is unreachable "
                        f"({type(exc).__name__}); save it with `dataset.save_to_disk(DIR)` and "
                        "pass DIR") from None
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    row = 1
    for split, dataset in splits:
        names = [c for c in columns if c in dataset.column_names] if columns else None
        if names:
            dataset = dataset.select_columns(names)
        for start in range(0, len(dataset), chunk_rows):
            frame = dataset.select(range(start, min(start + chunk_rows, len(dataset)))).to_pandas()
            if split is not None:
                frame["split"] = split
            frame[LINE] = range(row, row + len(frame))
            row += len(frame)
            yield frame


_READERS = {"csv": _read_delimited(","), "tsv": _read_delimited("\t"), "jsonl": _read_jsonl,
            "json": _read_json, "parquet": _read_parquet, "phrasebank": _read_phrasebank,
            "hf": _read_hf}


# ---------------------------------------------------------------- streaming writer


def write_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    fmt = _SUFFIXES.get(suffix)
    if fmt not in WRITE_FORMATS:
        raise DataError(f"cannot write '{suffix or path}' files; give the output a "
                        ".csv, .tsv, .jsonl or .parquet suffix")
    return fmt


class TableWriter:
    """Append DataFrame chunks to a CSV/TSV/JSONL/Parquet file; atomic on :meth:`close`.

    Use as a context manager: an exception inside the block discards the temp file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.format = write_format(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._parquet = None
        self.rows = 0

    def write(self, frame: "pd.DataFrame") -> None:
        if self.format == "parquet":
            self._write_parquet(frame)
        elif self.format == "jsonl":
            text = frame.to_json(orient="records", lines=True, force_ascii=False)
            with open(self._tmp, "a", encoding="utf-8") as fh:
                fh.write(text if text.endswith("\n") or not text else text + "\n")
        else:
            frame.to_csv(self._tmp, mode="a", index=False, header=self.rows == 0,
                         sep="\t" if self.format == "tsv" else ",")
        self.rows += len(frame)

    def _write_parquet(self, frame: "pd.DataFrame") -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._tmp, table.schema)
        else:
            table = table.cast(self._parquet.schema)
        self._parquet.write_table(table)

    def close(self, commit: bool = True) -> None:
        try:
            if self._parquet is not None:
                self._parquet.close()
                self._parquet = None
            if commit:
                os.replace(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)
