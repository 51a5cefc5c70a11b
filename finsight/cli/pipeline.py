"""`finsight pipeline run`: prep -> train -> evaluate -> export -> analyze from one config."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from finsight.cli._app import app, err, out, print_json, settings

pipeline_app = typer.Typer(help="Run the whole lifecycle from one config.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("run", short_help="Run the stages that changed; skip the rest.")
def run(
    ctx: typer.Context,
    start: Optional[str] = typer.Option(None, "--from", help="Re-run from this stage on, changed or not."),
    stop: Optional[str] = typer.Option(None, "--to", help="Stop after this stage."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Run every stage whose inputs or config changed since its last success; skip the rest.

    Stages: prep, train, evaluate, export, register, triton, analyze
    (`finsight config show pipeline`).
    """
    from finsight.errors import FinsightError
    from finsight.pipeline import run_pipeline

    resolved = settings(ctx)
    show = None if as_json else (lambda report: err.print(_line(report)))
    report = run_pipeline(resolved, start=start, stop=stop, on_stage=show)
    if as_json:
        print_json(report.as_dict())
    else:
        out.print(_table(report))
    failed = report.failed
    if failed is not None:
        raise FinsightError(f"pipeline stopped at stage '{failed.name}': {failed.reason}; fix it and "
                            "run again (earlier stages are kept and skipped)")


_STYLE = {"ran": "green", "skipped": "dim", "failed": "bold red", "disabled": "dim", "not run": "dim"}


def _line(report) -> str:
    style = _STYLE[report.status]
    took = f" in {report.seconds:.1f}s" if report.status == "ran" else ""
    return f"[{style}]{report.name}: {report.status}{took}[/] [dim]{report.reason}[/]"


def _table(report) -> Table:
    table = Table(title=f"finsight pipeline ({report.workdir})", title_justify="left")
    for column in ("stage", "status", "seconds", "result"):
        table.add_column(column, overflow="fold", justify="right" if column == "seconds" else "left")
    for stage in report.stages:
        table.add_row(stage.name, f"[{_STYLE[stage.status]}]{stage.status}[/]",
                      f"{stage.seconds:.1f}" if stage.status == "ran" else "-", stage.describe())
    table.caption = f"{report.seconds:.1f} s in all"
    return table
