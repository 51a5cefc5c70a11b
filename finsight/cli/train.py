"""`finsight train`: fine-tune on a `prep` output dir; writes <out>/model, metrics.json, config.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from finsight.cli._app import app, err, out, print_json, setting, settings, verbose


@app.command("train")
def train(
    ctx: typer.Context,
    data: Optional[Path] = typer.Option(
        None, "--data", "-d", help="A `finsight prep` output dir; default: data.out.", file_okay=False),
    model: Optional[str] = setting("model.name_or_path", "--model", "-m"),
    out_dir: Optional[Path] = setting("train.out", "--out", "-o", file_okay=False),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's metrics as JSON."),
) -> None:
    """Fine-tune a sentiment classifier with Lightning; track the run in MLflow."""
    from finsight.train import fit

    resolved = settings(ctx, {"model.name_or_path": model, "train.out": out_dir})
    result = fit(data if data is not None else resolved.data.out, resolved, resume=resume,
                 progress=not as_json and err.is_terminal, verbose=verbose(ctx))
    if result is None:
        return  # a DDP worker process; rank 0 reports
    if as_json:
        print_json(result.as_dict())
    else:
        _render(result.as_dict())


def _render(result: dict[str, Any]) -> None:
    table = Table(title=f"finsight train: {result['run_name']}")
    table.add_column("epoch", justify="right")
    for column in ("train loss", "train acc", "val loss", "val acc", "val macro-F1"):
        table.add_column(column, justify="right")
    for row in result["history"]:
        best = row["epoch"] == result["best_epoch"]
        cells = [row.get(k) for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                      "val_macro_f1")]
        style = "bold green" if best else None
        table.add_row(str(row["epoch"]) + (" *" if best else ""),
                      *("-" if v is None else f"{v:.4f}" for v in cells), style=style)
    out.print(table)
    best = result["best_val"]
    stop = " (stopped early)" if result["stopped_early"] else ""
    out.print(f"best epoch {result['best_epoch']}{stop}: val accuracy {best.get('accuracy', 0):.4f}, "
              f"macro-F1 {best.get('macro_f1', 0):.4f}; labels {', '.join(result['labels'])} "
              f"({result['head']} head), {result['precision']}, {result['duration_s']:.0f}s")
    if result["mlflow_run_id"]:
        out.print(f"MLflow run {result['mlflow_run_id']} at {result['tracking_uri']}")
    out.print(f"wrote {result['model_dir']}, metrics.json and config.yaml in {result['out']}")
