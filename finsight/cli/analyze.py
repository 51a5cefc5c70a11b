"""`finsight analyze`: score every row of news/filings/tweets files."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from finsight.cli._app import app, err, out, print_json, setting, settings


def _names(values: Optional[List[str]]) -> Optional[list[str]]:
    """Repeatable option values, each also comma-separated: `--group-by ticker,date`."""
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


@app.command("analyze")
def analyze(
    ctx: typer.Context,
    inputs: List[Path] = typer.Argument(
        ..., metavar="FILE", help="CSV/TSV/JSONL/JSON/Parquet files, scored in order."),
    out_file: Optional[Path] = setting("analyze.out", "--out", "-o"),
    model: Optional[str] = setting("predict.model", "--model", "-m"),
    backend: Optional[str] = setting("predict.backend", "--backend", "-b"),
    text_column: Optional[str] = setting("analyze.text_column", "--text-column"),
    id_column: Optional[str] = setting("analyze.id_column", "--id-column"),
    keep_columns: Optional[List[str]] = setting(
        "analyze.keep_columns", "--keep-columns", "-k", note="repeat or comma-separate"),
    group_by: Optional[List[str]] = setting(
        "analyze.group_by", "--group-by", "-g", note="repeat or comma-separate"),
    mode: Optional[str] = setting("analyze.mode", "--mode"),
    sentences: Optional[bool] = setting("analyze.write_sentences", "--sentences/--no-sentences"),
    explain: Optional[int] = setting("analyze.explain", "--explain", metavar="K"),
    batch_size: Optional[int] = setting("predict.batch_size", "--batch-size"),
    device: Optional[str] = setting("predict.device", "--device"),
    time_column: Optional[str] = setting("analyze.time_column", "--time-column"),
    bucket: Optional[str] = setting("analyze.time_bucket", "--bucket"),
    timezone: Optional[str] = setting("analyze.timezone", "--timezone"),
    session_close: Optional[str] = setting("analyze.session_close", "--session-close"),
    calendar: Optional[str] = setting("analyze.calendar", "--calendar"),
    rolling: Optional[int] = setting("analyze.rolling", "--rolling"),
    halflife: Optional[float] = setting("analyze.halflife", "--halflife"),
    fill: Optional[bool] = setting("analyze.fill", "--fill/--no-fill"),
    plot: Optional[Path] = setting("analyze.plot", "--plot"),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Score every row: label, confidence, p_negative/p_neutral/p_positive, sentiment = P(pos) - P(neg)."""
    from finsight.analyze import analyze_files

    resolved = settings(ctx, {
        "analyze.out": out_file, "predict.model": model, "predict.backend": backend,
        "analyze.text_column": text_column, "analyze.id_column": id_column,
        "analyze.keep_columns": _names(keep_columns), "analyze.group_by": _names(group_by),
        "analyze.mode": mode, "analyze.write_sentences": sentences, "analyze.explain": explain,
        "predict.batch_size": batch_size, "predict.device": device, **_index_flags(
            time_column, bucket, timezone, session_close, calendar, rolling, halflife, fill, plot)})
    with _progress() as progress:
        summary = analyze_files(inputs, resolved, on_progress=progress)
    if as_json:
        print_json(summary.as_dict())
        return
    out.print(_summary_table(summary))
    if summary.scored and summary.close_calls * 2 > summary.scored:
        from finsight.predict.scores import CLOSE_CALL

        err.print(f"[yellow]{summary.close_calls:,} of {summary.scored:,} labels lead the runner-up by "
                  f"less than {CLOSE_CALL:g} probability: the model hardly separates these classes, "
                  "so the label counts say little; see mean p and check it with finsight evaluate[/]")
    if summary.time_errors:
        err.print(f"[yellow]{summary.time_errors:,} rows have a time that does not parse: not scored, "
                  "error 'unparseable time', left out of the index[/]")
    if summary.truncated and summary.mode == "sentence":
        err.print(f"[yellow]{summary.truncated:,} rows were longer than the model's max length and "
                  "were truncated; --mode document scores long texts sentence by sentence[/]")


def _index_flags(*values) -> dict:
    keys = ("time_column", "time_bucket", "timezone", "session_close", "calendar", "rolling", "halflife",
            "fill", "plot")
    return {f"analyze.{key}": value for key, value in zip(keys, values)}


class _progress:
    """A rich progress bar on stderr with rows and rows/s."""

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[rate]:>9} rows/s"), TimeElapsedColumn(),
                             console=err, transient=True)
        self._bar.__enter__()
        self._task = self._bar.add_task("scoring", total=None, rate="-")
        return self

    def __call__(self, done: int, total: int | None) -> None:
        task = self._bar.tasks[0]
        rate = done / task.elapsed if task.elapsed else 0.0
        self._bar.update(self._task, completed=done, total=max(total or 0, done) or None,
                         rate=f"{rate:,.0f}")

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)


def _summary_table(summary) -> Table:
    data = summary.as_dict()
    table = Table(title=f"finsight analyze ({data['backend']}, {data['mode']} mode)", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    scored = summary.scored or 1
    for label, count in data["label_counts"].items():
        table.add_row(label, f"{count:,}  ({count / scored:.1%})")
    mean = data["mean_sentiment"]
    table.add_row("mean sentiment", "-" if mean is None else f"{mean:+.4f}")
    probs = data["mean_probabilities"]
    if probs:
        table.add_row("mean p (" + "/".join(label[:3] for label in probs) + ")",
                      "/".join(f"{p:.3f}" for p in probs.values()))
    table.add_row("close calls", f"{data['close_calls']:,}  ({data['close_calls'] / scored:.1%})")
    table.add_row("rows", f"{data['rows']:,}")
    if data["sentences"] is not None:
        table.add_row("sentences", f"{data['sentences']:,}")
    table.add_row("errors", f"{data['errors']:,}")
    table.add_row("truncated", f"{data['truncated']:,}")
    table.add_row("cleaning", _cleaning(data["cleaning"]))
    table.add_row("rows/s", f"{data['rows_per_s']:,.0f}")
    for kind, path in data["outputs"].items():
        table.add_row(kind, path)
    return table


def _cleaning(cleaning: dict) -> str:
    """``recorded`` or ``default (no recipe recorded)``, and the optional steps that ran."""
    extra = [step.removeprefix("remove_") for step in ("remove_urls", "remove_html") if cleaning["recipe"][step]]
    return cleaning["provenance"] + (f" (removes {', '.join(extra)})" if extra else "")
