"""Streaming readers and atomic writers for CSV/TSV/JSONL/JSON/Parquet/PhraseBank/HF datasets.

Readers yield pandas DataFrame chunks so memory stays flat with file size; every chunk
carries a ``_line`` column (1-based line or row number in the file) so errors can name
the row. Writers write to a temporary file beside the target and rename on success, so a
failed run never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from finsight.errors import DataError, OutputError

if TYPE_CHECKING:
    import pandas as pd

LINE = "_line"
# Column names tried, in order, when a command is not told which column holds what.
TEXT_COLUMNS = ("text", "sentence", "headline", "title", "body", "content")
LABEL_COLUMNS = ("label", "sentiment")
ID_COLUMNS = ("id", "doc_id", "document_id", "uid")
FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "phrasebank", "hf")
WRITE_FORMATS = ("csv", "tsv", "jsonl", "parquet")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


# ---------------------------------------------------------------- atomic writes

# An OSError with one of these while writing an output is the disk's answer, not a bug.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_WRITE_ERRNOS = _NO_SPACE | {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                             errno.EEXIST, errno.ENOENT}


def check_writable(path: str | os.PathLike, *, flag: str = "--out") -> None:
    """Refuse an output that cannot be written before any expensive work.

    ``path`` (a file or a directory) is written beside itself, so its nearest existing
    parent must be a directory in which a file can be created.
    """
    path = Path(path).expanduser().absolute()
    base = path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise OutputError(f"cannot write {path}: {base} is a file, not a directory; pass another {flag}")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise output_error(path, exc, flag=flag) from None


def output_error(path: str | os.PathLike, exc: OSError, *, flag: str = "--out") -> OutputError:
    """One line for an output the OS refused: the path, the OS reason and the fix."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    fix = "free some space or pass another" if exc.errno in _NO_SPACE else "pass another"
    return OutputError(f"cannot write {path}: {reason}; {fix} {flag}")


def _write_failure(exc: OSError, tmp: Path) -> bool:
    return exc.errno in _NO_SPACE or (exc.errno in _WRITE_ERRNOS and str(tmp) in str(exc.filename or ""))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise output_error(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    _usual_mode(tmp_path, 0o666)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if _write_failure(exc, tmp_path) or str(path) == str(exc.filename2 or ""):
            raise output_error(path, exc) from None
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: str | os.PathLike, *, strict: bool = True) -> dict[str, Any]:
    """A JSON object file; ``{}`` when it does not exist.

    Invalid JSON (or JSON that is not an object) raises DataError naming the file; with
    ``strict=False`` it reads as ``{}``: for caches and files found by a search, which are
    rewritten or skipped rather than repaired by hand.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        if not strict:
            return {}
        raise DataError(f"{path} is not a readable JSON file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); fix or delete it") from None
    if isinstance(payload, dict):
        return payload
    if not strict:
        return {}
    raise DataError(f"{path} holds JSON {type(payload).__name__}, not an object; fix or delete it")


def atomic_write_json(path: str | os.PathLike, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp dir beside ``path``; its files land in ``path`` only if the block succeeds.

    A new ``path`` appears whole (one rename). An existing one has each new file replaced
    in turn; files it had that the run did not write are kept.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise output_error(path, exc) from None
    _usual_mode(tmp, 0o777)
    try:
        yield tmp
        try:
            _move_into(tmp, path)
        except OSError as exc:
            raise output_error(path, exc) from None
    except OSError as exc:
        if _write_failure(exc, tmp):
            raise output_error(path, exc) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_into(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    for item in sorted(tmp.rglob("*")):
        target = path / item.relative_to(tmp)
        if item.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            os.replace(item, target)


def _usual_mode(path: Path, mode: int) -> None:
    # mkstemp/mkdtemp make owner-only temp files; the final output should get the
    # permissions a plain open()/mkdir() would give under the user's umask.
    os.chmod(path, mode & ~_umask())


@functools.cache
def _umask() -> int:
    # Read once: os.umask can only be read by setting it, which races with other threads.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


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
    """``owner/name`` with no file suffix: a missing ``data/train.csv`` is a missing file."""
    parts = name.split("/")
    suffix = Path(name).suffix.lower()
    return (len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))
            and suffix not in _SUFFIXES and suffix not in (".txt", ".gz", ".zip", ".bz2", ".xz"))


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(64 * 1024)
    if not head.strip():
        raise DataError(f"input file {path} is empty")
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.decode("latin-1")
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    first = text.lstrip()[:1]
    if first == "[":
        return "json"
    if first == "{":
        try:
            json.loads(lines[0])
            return "jsonl"
        except ValueError:
            return "json"  # one object spread over lines, e.g. {"data": [...]}
    sample = lines[:-1] or lines  # the last sampled line may be cut off
    if all(_PHRASEBANK_LINE.match(ln) for ln in sample):
        return "phrasebank"
    if "\t" in lines[0]:
        return "tsv"
    return "csv"


# `sentence@label`: the part after the last @ is one short word, never a CSV/TSV field list.
_PHRASEBANK_LINE = re.compile(r"^.*@[ \t]*[\w+-]{1,30}[ \t]*$")


# ---------------------------------------------------------------- readers


def iter_chunks(
    path: str | os.PathLike,
    *,
    format: str = "auto",
    columns: Sequence[str] | None = None,
    chunk_rows: int = 8192,
    encoding: str | None = None,
    encoding_option: str = "--encoding",
) -> Iterator["pd.DataFrame"]:
    """Yield DataFrame chunks of at most ``chunk_rows`` rows, each with a ``_line`` column.

    ``columns`` limits what is read (the check that they exist is the caller's, via
    :func:`resolve_column`, which can list the columns the file has). ``encoding_option`` is
    how the calling command sets the encoding (``--encoding``, or ``--set KEY=`` ending in '=').
    """
    fmt = detect_format(path, format)
    path = Path(path)
    if fmt != "hf":
        _check_file(path)
        if fmt != "parquet":
            _check_text(path)
    if encoding is not None:
        _check_encoding(encoding, encoding_option)
    reader = _READERS[fmt]
    produced = False
    try:
        for chunk in reader(path, columns=columns, chunk_rows=chunk_rows, encoding=encoding):
            if len(chunk):
                produced = True
                yield chunk
    except UnicodeDecodeError:
        raise DataError(_decode_message(path, encoding or _DEFAULT_ENCODING.get(fmt, "utf-8"),
                                        encoding_option)) from None
    if not produced:
        raise DataError(f"input file {path} has no data rows")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"input file {path} not found")
    if path.is_dir():
        raise DataError(f"{path} is a directory; pass a file (or --format hf for a saved dataset)")
    if path.stat().st_size == 0:
        raise DataError(f"input file {path} is empty")


_READABLE = "finsight reads CSV, TSV, JSONL, JSON, Parquet and PhraseBank files"
_MAGIC = (  # leading bytes -> what the file is, and what to do instead
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel (.xls) or other Office file",
     "save the sheet as CSV UTF-8 and pass that"),
    (b"%PDF", "a PDF document", "export its text to a CSV or JSONL file"),
    (b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip FILE)"),
    (b"BZh", "bzip2-compressed", "decompress it first (bunzip2 FILE)"),
    (b"\xfd7zXZ", "xz-compressed", "decompress it first (unxz FILE)"),
)


def _check_text(path: Path) -> None:
    """Refuse spreadsheets, archives and other binary files before reading them as text."""
    import codecs

    with open(path, "rb") as fh:
        head = fh.read(8192)
    kind, fix = _binary_kind(path, head)
    if kind is None and head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return  # UTF-16 text is full of NUL bytes; the decoder reports it properly
    if kind is None:
        controls = sum(b < 32 and b not in b"\t\n\r\f\x1b" for b in head)
        if b"\x00" in head or controls > len(head) // 10:
            kind, fix = "binary data, not text", "pass a text table"
    if kind is not None:
        raise DataError(f"{path} is {kind}, a format finsight does not read; {fix} "
                        f"({_READABLE})")


def _binary_kind(path: Path, head: bytes) -> tuple[str | None, str | None]:
    if head.startswith(b"PK\x03\x04"):
        import zipfile

        try:
            names = set(zipfile.ZipFile(path).namelist())
        except (zipfile.BadZipFile, OSError):
            names = set()
        if "xl/workbook.xml" in names:
            return "an Excel workbook (.xlsx)", "save the sheet as CSV UTF-8 (File > Save As) and pass that"
        if "content.xml" in names:
            return "an OpenDocument file (.ods/.odt)", "save the sheet as CSV UTF-8 and pass that"
        return "a zip archive", "unzip it and pass the file inside"
    for magic, kind, fix in _MAGIC:
        if head.startswith(magic):
            return kind, fix
    return None, None


def _option(option: str, value: str) -> str:
    """A command's option with a value, as typed: ``--encoding utf-8`` or ``--set k=utf-8``."""
    return f"{option}{value}" if option.endswith("=") else f"{option} {value}"


def _check_encoding(encoding: str, option: str = "--encoding") -> None:
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"unknown text encoding '{encoding}' ({_option(option, 'NAME')}); "
                        "use e.g. utf-8, latin-1, cp1252, utf-16") from None


_DEFAULT_ENCODING = {"phrasebank": "latin-1"}


def _decode_message(path: Path, encoding: str, option: str = "--encoding") -> str:
    """Where the first undecodable byte is (line and byte offset in the file) and the fix."""
    import codecs

    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return (f"{path} is UTF-16 (it starts with a UTF-16 byte-order mark), not {encoding}; "
                f"pass {_option(option, 'utf-16')} or re-save the file as UTF-8")
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, line = 0, 1
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                # The decoder may hold back up to 3 bytes of an unfinished sequence.
                bad = max(0, exc.start - len(exc.object) + len(block))
                where = offset + bad
                line += block[:bad].count(b"\n")
                return (f"{path} is not valid {encoding}: byte 0x{exc.object[exc.start]:02x} on "
                        f"line {line} (file offset {where}); {_encoding_hint(path, option)}")
            offset += len(block)
            line += block.count(b"\n")
    return (f"{path} is not valid {encoding}; pass the right encoding ({_option(option, 'latin-1')}) "
            "or re-save the file as UTF-8")


def _encoding_hint(path: Path, option: str = "--encoding") -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            for _ in iter(lambda: fh.read(1 << 20), ""):
                pass
        return f"it is valid UTF-8: pass {_option(option, 'utf-8')}"
    except UnicodeDecodeError:
        return (f"it looks like latin-1/cp1252 text: pass {_option(option, 'latin-1')} "
                "or re-save the file as UTF-8")


def read_table(path: str | os.PathLike, **kwargs: Any) -> "pd.DataFrame":
    """The whole file as one DataFrame (for inputs that fit in memory, e.g. training data)."""
    import pandas as pd

    chunks = list(iter_chunks(path, **kwargs))
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0].reset_index(drop=True)


def list_columns(path: str | os.PathLike, *, format: str = "auto", encoding: str | None = None,
                 encoding_option: str = "--encoding") -> list[str]:
    """Column names of a file, read from its first chunk (cheap)."""
    fmt = detect_format(path, format)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    first = next(iter_chunks(path, format=fmt, chunk_rows=256, encoding=encoding,
                             encoding_option=encoding_option))
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
                    f"the file has columns: {', '.join(available)}; pass {flag}{'' if flag.endswith('=') else ' '}COLUMN")


def _read_delimited(sep: str):
    def read(path: Path, *, columns, chunk_rows, encoding) -> Iterator["pd.DataFrame"]:
        import pandas as pd

        usecols = (lambda c: c in set(columns)) if columns else None
        try:
            reader = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                                 chunksize=chunk_rows, encoding=encoding or "utf-8-sig",
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
    with open(path, encoding=encoding or "utf-8-sig") as fh:
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
        with open(path, encoding=encoding or "utf-8-sig") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        lines_hint = ("; one object per line is JSON Lines: pass --format jsonl"
                      if exc.msg == "Extra data" else "")
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                        f"column {exc.colno}){lines_hint}") from None
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

    A DatasetDict yields every split with a ``split`` column naming it. ``ClassLabel``
    columns come back as their names (the dataset declares them, so nothing is guessed).
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
        raise DataError(f"{path}: not a file or saved dataset here, and the Hugging Face Hub is "
                        f"unreachable ({type(exc).__name__}); check the path, or save the dataset "
                        "with `dataset.save_to_disk(DIR)` where the Hub is reachable and pass "
                        "DIR") from None
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    row = 1
    for split, dataset in splits:
        names = [c for c in columns if c in dataset.column_names] if columns else None
        if names:
            dataset = dataset.select_columns(names)
        class_labels = {name: feature.names for name, feature in dataset.features.items()
                        if isinstance(feature, datasets.ClassLabel)}
        for frame in dataset.to_pandas(batched=True, batch_size=chunk_rows):
            for name, label_names in class_labels.items():
                frame[name] = _class_names(frame[name], label_names)
            if split is not None:
                frame["split"] = split
            frame[LINE] = range(row, row + len(frame))
            row += len(frame)
            yield frame


def _class_names(codes: "pd.Series", names: Sequence[str]) -> "pd.Series":
    import numpy as np
    import pandas as pd

    values = codes.to_numpy()
    valid = (values >= 0) & (values < len(names))  # -1 marks "no label" (e.g. hidden test labels)
    out = np.full(len(values), None, dtype=object)
    out[valid] = np.asarray(names, dtype=object)[values[valid]]
    return pd.Series(out, index=codes.index, dtype=object)


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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as exc:
            raise output_error(self.path, exc) from None
        os.close(fd)
        self._tmp = Path(tmp)
        _usual_mode(self._tmp, 0o666)
        self._parquet = None
        self.rows = 0

    def write(self, frame: "pd.DataFrame") -> None:
        try:
            self._write(frame)
        except OSError as exc:
            if _write_failure(exc, self._tmp):
                raise output_error(self.path, exc) from None
            raise
        self.rows += len(frame)

    def _write(self, frame: "pd.DataFrame") -> None:
        if self.format == "parquet":
            self._write_parquet(frame)
        elif self.format == "jsonl":
            text = frame.to_json(orient="records", lines=True, force_ascii=False)
            with open(self._tmp, "a", encoding="utf-8") as fh:
                fh.write(text if text.endswith("\n") or not text else text + "\n")
        else:
            frame.to_csv(self._tmp, mode="a", index=False, header=self.rows == 0,
                         sep="\t" if self.format == "tsv" else ",")

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
        except OSError as exc:
            if commit and (_write_failure(exc, self._tmp) or exc.errno in _WRITE_ERRNOS):
                raise output_error(self.path, exc) from None
            raise
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(commit=exc_type is None)
