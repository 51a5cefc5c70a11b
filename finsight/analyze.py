"""`finsight analyze`: score every row of one or more files with one Predictor, streaming.

Chunks are read, cleaned and tokenized in a background thread while the model scores the
previous chunk, so memory stays flat with file size and the model never waits on parsing.
Rows keep input order; a row with no text gets empty prediction columns and an ``error``
reason; a malformed input stops the run with no output written.
"""

from __future__ import annotations

import queue
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from finsight.data.recipe import DEFAULT_RECIPE, CleaningRecipe
from finsight.errors import DataError
from finsight.index import TIME_ERROR, Bucketing, SentimentIndex, plot_index
from finsight.io import (ID_COLUMNS, TEXT_COLUMNS, TableWriter, WRITE_FORMATS, detect_format, iter_chunks,
                         list_columns, resolve_column)
from finsight.labels import LABELS
from finsight.paths import default_path
from finsight.predict.scores import CLOSE_CALL, PROB_COLUMNS, SCORE_COLUMNS, assign_scores, label_margin

if TYPE_CHECKING:
    import pandas as pd

    from finsight.config import AnalyzeSettings, Settings
    from finsight.predict.base import Predictor

ENCODING_OPTION = "--set analyze.encoding="  # analyze has no --encoding flag
Progress = Callable[[int, "int | None"], None]


@dataclass
class InputPlan:
    path: Path
    format: str
    text: str
    copied: list[str]  # id, kept and group-by columns, copied to the output
    time: str | None = None  # analyze.time_column, resolved


@dataclass
class AnalyzeSummary:
    backend: str
    model: str
    mode: str
    rows: int = 0
    errors: int = 0
    truncated: int = 0
    sentences: int = 0
    label_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LABELS, 0))
    sentiment_sum: float = 0.0
    prob_sums: np.ndarray = field(default_factory=lambda: np.zeros(len(LABELS)))
    close_calls: int = 0  # labels ahead of the runner-up by less than scores.CLOSE_CALL
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    cleaning: CleaningRecipe = DEFAULT_RECIPE  # what the predictor applied to every text
    time_errors: int | None = None  # rows whose --time-column value did not parse (in errors too)

    @property
    def scored(self) -> int:
        return self.rows - self.errors

    @property
    def mean_sentiment(self) -> float | None:
        return self.sentiment_sum / self.scored if self.scored else None

    @property
    def mean_probabilities(self) -> dict[str, float] | None:
        if not self.scored:
            return None
        return {label: float(total / self.scored) for label, total in zip(LABELS, self.prob_sums)}

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "errors": self.errors, "truncated": self.truncated,
                "sentences": self.sentences if self.mode == "document" else None,
                "label_counts": self.label_counts, "mean_sentiment": self.mean_sentiment,
                "mean_probabilities": self.mean_probabilities, "close_calls": self.close_calls,
                "rows_per_s": round(self.rows_per_s, 1), "seconds": round(self.seconds, 3),
                "outputs": self.outputs, "backend": self.backend, "model": self.model, "mode": self.mode,
                "cleaning": {"provenance": self.cleaning.provenance, "recorded": not self.cleaning.assumed,
                             "recipe": self.cleaning.as_dict()},
                **({} if self.time_errors is None else {"time_errors": self.time_errors})}


# ---------------------------------------------------------------- planning


def plan_inputs(inputs: Sequence[str | Path], settings: Settings) -> list[InputPlan]:
    """Check every input and its columns before any model is loaded."""
    if not inputs:
        raise DataError("no input files; pass one or more files to score")
    plans = [_plan(Path(path), settings) for path in inputs]
    # One output file: every input must contribute the same columns.
    for plan in plans[1:]:
        if plan.copied != plans[0].copied:
            raise DataError(f"inputs differ in the columns copied to the output: {plans[0].path} gives "
                            f"{plans[0].copied}, {plan.path} gives {plan.copied}; pass --id-column/"
                            "--keep-columns naming columns every input has, or score them separately")
    return plans


def _plan(path: Path, settings: Settings) -> InputPlan:
    opts = settings.analyze
    fmt = detect_format(path, settings.data.format)
    encoding = opts.encoding or settings.data.encoding
    available = list_columns(path, format=fmt, encoding=encoding, encoding_option=ENCODING_OPTION)
    text = resolve_column(available, opts.text_column, TEXT_COLUMNS, path=path, role="text",
                          flag="--text-column")
    copied: list[str] = []
    if opts.id_column:
        copied.append(resolve_column(available, opts.id_column, (), path=path, role="id", flag="--id-column"))
    else:
        copied.extend(c for c in available if c.lower() in ID_COLUMNS)
    for name, flag in [(c, "--keep-columns") for c in opts.keep_columns] + \
            [(c, "--group-by") for c in opts.group_by]:
        copied.append(resolve_column(available, name, (), path=path, role="requested", flag=flag))
    time = None
    if opts.time_column:
        time = resolve_column(available, opts.time_column, (), path=path, role="time", flag="--time-column")
        copied.append(time)
    return InputPlan(path=path, format=fmt, text=text, copied=list(dict.fromkeys(copied)), time=time)


def output_path(first_input: Path, settings: Settings) -> Path:
    """analyze.out, else <workdir>/analyze/<input stem>.scored.<input's format if writable, else parquet>."""
    if settings.analyze.out:
        return Path(settings.analyze.out)
    fmt = detect_format(first_input, settings.data.format)
    ext = fmt if fmt in WRITE_FORMATS else "parquet"
    return default_path(settings.workdir, "analyze", f"{first_input.stem}.scored.{ext}")


def sidecar_path(out: Path, kind: str) -> Path:
    """``<out stem>.<kind>.<out ext>``: the summary and sentence files beside the output."""
    return out.with_name(f"{out.stem}.{kind}{out.suffix}")


# ---------------------------------------------------------------- running


def analyze_files(inputs: Sequence[str | Path], settings: Settings, *, predictor: Predictor | None = None,
                  on_progress: Progress | None = None) -> AnalyzeSummary:
    """Score ``inputs`` (concatenated in order) into ``analyze.out``; returns the run summary."""
    from finsight.io import check_writable, write_format

    opts = settings.analyze
    plans = plan_inputs(inputs, settings)
    out = output_path(plans[0].path, settings)
    write_format(out)  # refuse an unwritable suffix or place before loading a model
    check_writable(out)
    if any(out.resolve() == p.path.resolve() for p in plans):
        raise DataError(f"output {out} is one of the inputs; pass another --out")
    index = _index(opts)  # every index setting checked before a model loads
    if predictor is None:
        from finsight.predict import load_predictor

        predictor = load_predictor(None, settings)
    summary = AnalyzeSummary(backend=predictor.name, model=str(predictor.source),
                             mode=opts.mode, cleaning=predictor.cleaning)
    groups = GroupSummary(opts.group_by) if opts.group_by and index is None else None
    total = sum(_estimate_rows(p) for p in plans)
    started = time.perf_counter()
    with ExitStack() as stack:
        writer = stack.enter_context(TableWriter(out))
        sentences = None
        if opts.mode == "document" and opts.write_sentences:
            sentences = stack.enter_context(TableWriter(sidecar_path(out, "sentences")))
        def emit(work: _Work, probs: np.ndarray) -> None:
            frame, sentence_frame = _score(work, probs)
            if opts.explain:
                frame["top_words"] = _top_words(predictor, work, opts.explain)
            writer.write(frame)
            if sentences is not None and sentence_frame is not None:
                sentences.write(sentence_frame)
            summary_update(summary, frame, work)
            if groups is not None:
                groups.update(frame)
            if index is not None:
                index.update(frame, work.buckets)
            if on_progress:
                on_progress(summary.rows, total)

        # GPU backends compute asynchronously: submit a chunk, then write the previous one while
        # it runs. CPU backends finish inside submit, so each chunk is written at once.
        overlap = str(predictor.device).startswith("cuda")
        pending = None
        for work in _prefetch(_prepare_all(plans, predictor, settings, index=index)):
            submitted = (work, predictor.submit(work.encoded))
            if pending is not None:
                emit(pending[0], pending[1]())
            pending = submitted
            if not overlap:
                emit(pending[0], pending[1]())
                pending = None
        if pending is not None:
            emit(pending[0], pending[1]())
        if groups is not None:
            summary_file = sidecar_path(out, "summary")
            with TableWriter(summary_file) as table:
                table.write(groups.result())
            summary.outputs["summary"] = str(summary_file)
        if index is not None:
            summary.outputs.update(write_index(index, sidecar_path(out, "summary"), opts))
            summary.time_errors = index.time_errors
        summary.outputs = {"scores": str(out), **summary.outputs}
        if sentences is not None:
            summary.outputs["sentences"] = str(sentences.path)
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class _Work:
    chunk: "pd.DataFrame"
    plan: InputPlan
    source: str | None  # the input's path when there are several inputs
    errors: np.ndarray  # object (n,): None or a reason
    prepared: Any  # Encoded (sentence mode) or DocumentBatch (document mode)
    mode: str
    buckets: "pd.Series | None" = None  # the index's bucket of every row (NaT: the time did not parse)

    @property
    def encoded(self):
        return self.prepared if self.mode == "sentence" else self.prepared.encoded


def _top_words(predictor: Predictor, work: _Work, k: int) -> list[str | None]:
    """``analyze.explain``: each row's K strongest words as JSON, None for a row with no text."""
    from finsight.data.clean import texts_to_score
    from finsight.predict.explain import top_words_json

    texts, _ = texts_to_score(work.chunk[work.plan.text].tolist())
    return top_words_json(predictor, texts, work.errors, k=k, mode=work.mode)


def _prepare_all(plans: Sequence[InputPlan], predictor: Predictor, settings: Settings, *,
                 index: SentimentIndex | None = None) -> Iterator[_Work]:
    # The very first chunk is one inference batch: the first scores are written (and the
    # progress bar moves) after one batch instead of a whole chunk, while the prefetch thread
    # reads and tokenizes the rest of the chunk.
    for i, plan in enumerate(plans):
        yield from _prepare_chunks(plan, str(plan.path) if len(plans) > 1 else None, predictor, settings,
                                   first_rows=predictor.batch_size if i == 0 else 0, index=index)


def _prepare_chunks(plan: InputPlan, source: str | None, predictor: Predictor, settings: Settings, *,
                    first_rows: int = 0, index: SentimentIndex | None = None) -> Iterator[_Work]:
    """Read, clean and tokenize; runs in the prefetch thread."""
    from finsight.data.clean import texts_to_score
    from finsight.predict.document import split_documents

    opts = settings.analyze
    columns = [plan.text, *plan.copied]
    chunks = iter_chunks(plan.path, format=plan.format, columns=columns, chunk_rows=chunk_rows(opts, predictor),
                         encoding=opts.encoding or settings.data.encoding, encoding_option=ENCODING_OPTION)
    for chunk in _split_first(chunks, first_rows):
        texts, errors = texts_to_score(chunk[plan.text].tolist())
        buckets = None
        if index is not None and plan.time is not None:
            buckets = index.assign(chunk[plan.time], column=plan.time)
            errors[buckets.isna().to_numpy() & (errors == None)] = TIME_ERROR  # noqa: E711 - elementwise
        valid = [t for t, e in zip(texts, errors) if e is None]
        prepared = split_documents(predictor, valid) if opts.mode == "document" else predictor.encode(valid)
        yield _Work(chunk=chunk, plan=plan, source=source, errors=errors, prepared=prepared, mode=opts.mode,
                    buckets=buckets)


def _split_first(chunks: Iterator["pd.DataFrame"], rows: int) -> Iterator["pd.DataFrame"]:
    """``chunks`` with the first one split after ``rows`` rows (0: unchanged)."""
    for i, chunk in enumerate(chunks):
        if i == 0 and 0 < rows < len(chunk):
            yield chunk.iloc[:rows]
            yield chunk.iloc[rows:]
        else:
            yield chunk


def chunk_rows(opts: AnalyzeSettings, predictor: Predictor) -> int:
    """analyze.chunk_rows, else bigger chunks on a GPU: more sorted batches per sync (measured
    on an H100: 23.5k texts/s with 8192-row chunks, 26.5k with 32768; benchmarks/RESULTS.md)."""
    if opts.chunk_rows:
        return int(opts.chunk_rows)
    return 32768 if str(predictor.device).startswith("cuda") else 8192


def _score(work: _Work, probs: np.ndarray) -> tuple["pd.DataFrame", "pd.DataFrame | None"]:
    """Output rows of one chunk from its probabilities (per row, or per sentence in document mode)."""
    import pandas as pd

    from finsight.predict.document import aggregate

    copied = _copied_columns(work.chunk, work.plan, work.source)
    valid = np.array([e is None for e in work.errors], dtype=bool)
    if work.mode == "sentence":
        return _with_scores(copied, probs, valid, work.errors), None
    batch, sentence_probs = work.prepared, probs
    rows = np.flatnonzero(valid)[batch.sentence_doc]
    sentence_frame = copied.iloc[rows].reset_index(drop=True)
    first = np.concatenate([[0], np.cumsum(batch.n_sentences)[:-1]])[batch.sentence_doc]
    sentence_frame["sentence_index"] = np.arange(len(rows)) - first
    sentence_frame["sentence"] = pd.array(batch.sentences, dtype="string")
    assign_scores(sentence_frame, sentence_probs)
    frame = _with_scores(copied, aggregate(batch, sentence_probs), valid, work.errors)
    n_sentences = np.zeros(len(valid), dtype=np.int64)
    n_sentences[valid] = batch.n_sentences
    frame.insert(len(frame.columns) - 1, "n_sentences", n_sentences)
    return frame, sentence_frame


def _copied_columns(chunk: "pd.DataFrame", plan: InputPlan, source: str | None) -> "pd.DataFrame":
    import pandas as pd

    frame = chunk[plan.copied].reset_index(drop=True)
    # A kept input column named like an output column (e.g. the gold `label`) keeps its values
    # under input_<name>; group-by columns keep their names so the summary can use them.
    reserved = {*SCORE_COLUMNS, "error", "n_sentences", "source", "sentence", "sentence_index"}
    frame = frame.rename(columns={c: f"input_{c}" for c in frame.columns if c in reserved})
    if source is not None:
        frame.insert(0, "source", pd.array([source] * len(frame), dtype="string"))
    return frame


def _with_scores(frame: "pd.DataFrame", probs: np.ndarray, valid: np.ndarray,
                 errors: np.ndarray) -> "pd.DataFrame":
    import pandas as pd

    assign_scores(frame, probs, valid)
    frame["error"] = pd.array(errors, dtype="string")
    return frame


def summary_update(summary: AnalyzeSummary, frame: "pd.DataFrame", work: _Work) -> None:
    summary.rows += len(frame)
    summary.errors += int(frame["error"].notna().sum())
    summary.truncated += int(work.prepared.truncated.sum() if work.mode == "sentence"
                             else work.prepared.truncated)
    if work.mode == "document":
        summary.sentences += len(work.prepared.sentences)
    for label, count in frame["label"].value_counts().items():
        summary.label_counts[label] += int(count)
    summary.sentiment_sum += float(np.nansum(frame["sentiment"].to_numpy()))
    probs = frame.loc[frame["error"].isna(), list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
    if len(probs):
        summary.prob_sums += probs.sum(axis=0)
        summary.close_calls += int((label_margin(probs) < CLOSE_CALL).sum())


class GroupSummary:
    """Per-group count, label shares, mean sentiment and errors, aggregated chunk by chunk."""

    def __init__(self, columns: Sequence[str]):
        self.columns = list(columns)
        self._parts: list["pd.DataFrame"] = []

    def update(self, frame: "pd.DataFrame") -> None:
        import pandas as pd

        scored = frame["error"].isna()
        parts = {c: frame[c] for c in self.columns}
        parts |= {"count": 1, "errors": (~scored).astype(int), "scored": scored.astype(int),
                  "sentiment_sum": frame["sentiment"].fillna(0.0)}
        parts |= {f"n_{label}": (frame["label"] == label).fillna(False).astype(int) for label in LABELS}
        self._parts.append(self._reduce(pd.DataFrame(parts)))
        if len(self._parts) > 16:  # keep memory bounded by the number of groups, not rows
            self._parts = [self._reduce(pd.concat(self._parts, ignore_index=True))]

    def _reduce(self, frame: "pd.DataFrame") -> "pd.DataFrame":
        return frame.groupby(self.columns, dropna=False, sort=False, as_index=False).sum()

    def result(self) -> "pd.DataFrame":
        import pandas as pd

        total = self._reduce(pd.concat(self._parts, ignore_index=True)).sort_values(self.columns)
        scored = total["scored"].where(total["scored"] > 0)
        out = total[self.columns].reset_index(drop=True)
        out["count"] = total["count"].to_numpy()
        for label in LABELS:
            out[f"share_{label}"] = (total[f"n_{label}"] / scored).to_numpy()
        out["mean_sentiment"] = (total["sentiment_sum"] / scored).to_numpy()
        out["errors"] = total["errors"].to_numpy()
        return out


# ---------------------------------------------------------------- the index


def _index(opts: AnalyzeSettings) -> SentimentIndex | None:
    if not opts.time_column:
        return None
    return SentimentIndex(opts.group_by, Bucketing.from_settings(opts), opts)


def write_index(index: SentimentIndex, path: Path, opts: AnalyzeSettings) -> dict[str, str]:
    """``<out>.summary.<ext>`` (and the plot): what analyze adds to its outputs."""
    frame = index.result()
    with TableWriter(path) as table:
        table.write(frame)
    outputs = {"summary": str(path)}
    if opts.plot:
        outputs["plot"] = str(plot_index(frame, Path(opts.plot), index.columns, groups=opts.plot_groups))
    return outputs


# ---------------------------------------------------------------- helpers


def _estimate_rows(plan: InputPlan) -> int | None:
    """Rows in a file for the progress bar: exact for Parquet, data lines otherwise."""
    if plan.format == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(plan.path).metadata.num_rows
    if not plan.path.is_file():
        return None
    lines = 0
    with open(plan.path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            lines += block.count(b"\n")
    return max(lines - (1 if plan.format in ("csv", "tsv") else 0), 0) or None


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


_DONE = object()


def _prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``items`` in a thread, ``depth`` ahead: parsing and tokenizing (which release the
    GIL in pandas' C parser and the Rust tokenizer) overlap with inference."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            put(_Failed(exc))

    thread = threading.Thread(target=produce, name="finsight-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
