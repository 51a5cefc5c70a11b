"""`finsight register MODEL`: a train output or an export becomes a new version in the MLflow registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

import typer
from rich.table import Table

from finsight.cli._app import app, err, out, print_json, setting, settings

if TYPE_CHECKING:
    from finsight.results import RegisterResult


@app.command("register")
def register(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="A train output (<run>/model or <run>) or an export directory."),
    name: Optional[str] = setting("registry.model_name", "--name", "-n"),
    aliases: Optional[List[str]] = typer.Option(
        None, "--alias", "-a", help="Point this alias at the new version, e.g. champion; repeatable."),
    tracking_uri: Optional[str] = setting("registry.tracking_uri", "--tracking-uri"),
    as_json: bool = typer.Option(False, "--json", help="Print the new version as JSON."),
) -> None:
    """Register a model or export dir as a new version (an MLflow pyfunc model), checked first.

    Refused: an export marked valid=false, files whose sha256 differ from finsight.json.
    """
    from finsight.publish import register_model

    resolved = settings(ctx, {"registry.model_name": name, "registry.tracking_uri": tracking_uri})
    result = register_model(model, resolved, aliases=aliases or (),
                            on_step=lambda step: err.print(f"[dim]{step}...[/]"))
    if as_json:
        print_json(result.as_dict())
    else:
        out.print(_table(result))


def _table(result: RegisterResult) -> Table:
    table = Table(title=f"registered {result.model_uri}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("aliases", ", ".join(result.aliases) or "-")
    table.add_row("artifact", f"{result.format} {result.precision} from {result.source}")
    figures = {k.removeprefix("finsight."): v for k, v in result.tags.items()
               if k.startswith(("finsight.validation.", "finsight.eval.", "finsight.train."))}
    for key, value in figures.items():
        table.add_row(key, value)
    link = "the training run" if result.training_run_linked else "a new run (training run not in this store)"
    table.add_row("run", f"{result.run_id} ({link})")
    table.add_row("store", result.tracking_uri)
    return table
