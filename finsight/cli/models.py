"""`finsight models list|alias|pull`: the registered versions, their aliases, a local copy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from finsight.cli._app import app, out, print_json, setting, settings

if TYPE_CHECKING:
    from finsight.results import ModelVersion

models_app = typer.Typer(help="Registered models: list versions, move an alias, pull a copy.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

_URI = setting("registry.tracking_uri", "--tracking-uri")


@models_app.command("list", short_help="Registered versions, aliases and their figures.")
def list_(
    ctx: typer.Context,
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Only this registered model."),
    tracking_uri: Optional[str] = _URI,
    as_json: bool = typer.Option(False, "--json", help="Print the versions as JSON."),
) -> None:
    """Names, versions, aliases, format/precision, validation and evaluation figures, created time."""
    from finsight.registry import list_versions

    rows = list_versions(settings(ctx, {"registry.tracking_uri": tracking_uri}), name=name)
    if as_json:
        print_json([row.as_dict() for row in rows])
    elif not rows:
        out.print("no registered models (register one with `finsight register MODEL`)")
    else:
        out.print(_table(rows))


def _table(rows: list[ModelVersion]) -> Table:
    table = Table(title="registered models", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("v", justify="right")
    for column in ("aliases", "artifact", "checked", "eval", "created"):
        table.add_column(column, overflow="fold")
    for row in rows:
        artifact = f"{row.format} {row.precision}" + {"true": " valid", "false": " INVALID"}.get(
            row.valid or "", "")
        checked = (_figures(row.validation, agreement="agree", max_abs_diff="|diff|") if row.validation
                   else _figures(row.train, val_macro_f1="val F1"))
        table.add_row(row.name, str(row.version), ", ".join(row.aliases) or "-", artifact,
                      checked or "-", _figures(row.eval, macro_f1="F1", accuracy="acc") or "-",
                      row.created[:16].replace("T", " "))
    return table


def _figures(group: dict[str, str], **names: str) -> str:
    return ", ".join(f"{label} {_short(group[key])}" for key, label in names.items() if key in group)


def _short(value: str) -> str:
    try:
        return f"{float(value):.3g}"
    except ValueError:
        return value


@models_app.command("alias", short_help="Point ALIAS at VERSION (promote or roll back).")
def alias(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    version: int = typer.Argument(..., help="Version the alias should point at."),
    alias_name: str = typer.Argument(..., metavar="ALIAS", help="Alias, e.g. champion."),
    tracking_uri: Optional[str] = _URI,
    as_json: bool = typer.Option(False, "--json", help="Print the change as JSON."),
) -> None:
    """Point ALIAS at VERSION (roll back by pointing it at the previous version again)."""
    from finsight.registry import set_alias

    result = set_alias(name, settings(ctx, {"registry.tracking_uri": tracking_uri}), version=version,
                       alias=alias_name)
    if as_json:
        print_json(result.as_dict())
        return
    before = "unset" if result.previous is None else f"version {result.previous}"
    out.print(f"{result.model_uri}: {before} -> version {result.version}")


@models_app.command("pull", short_help="Copy a registered version into a directory.")
def pull(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="models:/NAME@ALIAS or models:/NAME/VERSION."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="New directory for the model or export dir."),
    tracking_uri: Optional[str] = _URI,
    as_json: bool = typer.Option(False, "--json", help="Print what was pulled as JSON."),
) -> None:
    """Copy a registered version into a directory any finsight command (or serve host) can load."""
    from finsight.registry import pull_model

    result = pull_model(ref, settings(ctx, {"registry.tracking_uri": tracking_uri}), out=out_dir)
    if as_json:
        print_json(result.as_dict())
    else:
        out.print(f"pulled {ref} (version {result.version} of '{result.name}', "
                  f"{result.format}) into {result.out}")
