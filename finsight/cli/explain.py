"""`finsight explain`: which words drove a label (word occlusion, any backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from finsight.cli._app import app, out, print_json, setting, settings


@app.command("explain")
def explain(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="TEXT|FILE",
                                 help="A text to explain, or a file of texts (as analyze reads them)."),
    model: Optional[str] = setting("predict.model", "--model", "-m"),
    backend: Optional[str] = setting("predict.backend", "--backend", "-b"),
    out_file: Optional[Path] = setting("analyze.out", "--out", "-o"),
    top: Optional[int] = setting("analyze.explain", "--top", "-k", metavar="K",
                                 note="a FILE: per row, 5 when not given; a TEXT: rows of the table, 10"),
    mode: Optional[str] = setting("analyze.mode", "--mode"),
    text_column: Optional[str] = setting("analyze.text_column", "--text-column"),
    as_json: bool = typer.Option(False, "--json", help="Print the explanation (or the run summary) as JSON."),
) -> None:
    """Each word's contribution to the label: the drop in the label's probability and in
    sentiment when the word is removed. A FILE is scored as analyze scores it, plus top_words."""
    flags = {"predict.model": model, "predict.backend": backend, "analyze.out": out_file,
             "analyze.mode": mode, "analyze.text_column": text_column}
    if Path(target).is_file():
        from finsight.analyze import analyze_files
        from finsight.cli.analyze import _progress, _summary_table

        if top == 0:
            raise typer.BadParameter("K must be 1..100 (0 would explain nothing)", param_hint="'--top'")
        resolved = settings(ctx, {**flags, "analyze.explain": top or 5})
        with _progress() as progress:
            summary = analyze_files([Path(target)], resolved, on_progress=progress)
        if as_json:
            print_json(summary.as_dict())
        else:
            out.print(_summary_table(summary))
        return
    from finsight.predict.explain import explain_text

    resolved = settings(ctx, {**flags, "analyze.explain": top})
    explanation = explain_text(target, resolved, mode="auto" if mode is None else resolved.analyze.mode)
    if as_json:
        print_json(explanation.as_dict())
        return
    for part in explanation.sentences or [explanation]:
        out.print(coloured(part))
    out.print(_table(explanation, top or 10))


def coloured(explanation) -> Text:
    """The sentence with each word on a background by its contribution: green supports the
    label, red works against it, stronger colour for a larger share of the strongest word."""
    text = Text(f"{explanation.label} {explanation.confidence:.2f}  ", style="bold")
    strongest = max((abs(w.contribution) for w in explanation.words), default=0.0) or 1.0
    cursor = 0
    for word in explanation.words:
        text.append(explanation.text[cursor:word.start])
        share = abs(word.contribution) / strongest
        colour = "green" if word.contribution > 0 else "red"
        style = f"black on {colour}" if share > 0.5 else (colour if share > 0.1 else "")
        text.append(explanation.text[word.start:word.end], style=style)
        cursor = word.end
    text.append(explanation.text[cursor:])
    return text


def _table(explanation, k: int) -> Table:
    table = Table(title=f"top words for {explanation.label} (sentiment {explanation.sentiment:+.3f})")
    table.add_column("word")
    table.add_column(f"d p({explanation.label})", justify="right")
    table.add_column("d sentiment", justify="right")
    for word in explanation.top_words(k):
        table.add_row(escape(word.word), f"{word.contribution:+.4f}", f"{word.sentiment:+.4f}")
    return table
