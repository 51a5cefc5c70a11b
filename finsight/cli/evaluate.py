"""`finsight evaluate`: accuracy, macro-F1, per-class metrics and a confusion matrix for any model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from finsight.cli._app import app, out, print_json, setting, settings, verbose

@app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model dir, export dir or hub id."),
    data: Optional[Path] = typer.Option(
        None, "--data", "-d",
        help="A `finsight prep` dir or a labeled file; default: the prep dir the model was trained on."),
    split: str = typer.Option("test", "--split", help="Split of a prep dir to score."),
    backend: Optional[str] = setting("predict.backend", "--backend", "-b"),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output dir; default <workdir>/eval/<model name>-<split>.", file_okay=False),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Score a model on labeled data; write metrics.json and confusion_matrix.png."""
    from finsight.train import evaluate as run_evaluate

    resolved = settings(ctx, {"predict.backend": backend})
    metrics = run_evaluate(model, resolved, data=data, split=split, out=out_dir, verbose=verbose(ctx)).as_dict()
    if as_json:
        print_json(metrics)
    else:
        _render(metrics)


def _render(metrics: dict[str, Any]) -> None:
    table = Table(title=f"{metrics['model']} on {metrics['split']} ({metrics['n']} rows, {metrics['backend']})")
    for column in ("label", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, row in metrics["per_class"].items():
        table.add_row(label, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                      str(row["support"]))
    out.print(table)
    out.print(f"accuracy [bold]{metrics['accuracy']:.4f}[/], macro-F1 [bold]{metrics['macro_f1']:.4f}[/], "
              f"mean loss {metrics['loss']:.4f}")
    out.print(f"wrote {metrics['out']}/metrics.json and confusion_matrix.png")
