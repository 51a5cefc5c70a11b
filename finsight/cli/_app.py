"""The typer app, global options, and the one place that turns errors into exit codes."""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Mapping, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from finsight import __version__
from finsight.errors import FinsightError

# Human output goes to stdout; progress, warnings and errors to stderr, so that
# `--json` output on stdout stays machine-readable.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class GlobalOptions:
    config: Optional[Path] = None
    overrides: list[str] = field(default_factory=list)
    verbose: bool = False


class FinsightGroup(TyperGroup):
    """Runs every command; expected errors end as one red line on stderr and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FinsightError as exc:
            opts = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
            if opts.verbose:
                err.print(escape("".join(traceback.format_exception(exc))), end="")
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]")
            raise typer.Exit(130) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # registration order, not alphabetical


app = typer.Typer(
    cls=FinsightGroup,
    name="finsight",
    help="Financial sentiment analysis around FinBERT: prep, train, evaluate, export, analyze, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        out.print(f"finsight {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="YAML config file (or env FINSIGHT_CONFIG).",
        dir_okay=False),
    overrides: Optional[List[str]] = typer.Option(
        None, "--set", "-s", metavar="SECTION.KEY=VALUE",
        help="Override one config key; repeatable. Values are YAML scalars."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and debug logs."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    ctx.obj = GlobalOptions(config=config, overrides=list(overrides or []), verbose=verbose)


def settings(ctx: typer.Context, flags: Mapping[str, Any] | None = None):
    """Resolve the settings for a command: global options plus the command's own flags."""
    from finsight.config import load_settings

    opts = ctx.find_object(GlobalOptions) or GlobalOptions()
    resolved = load_settings(opts.config, opts.overrides, flags)
    for note in resolved.deprecations:
        err.print(f"[yellow]warning:[/] {escape(note)}")
    return resolved


def verbose(ctx: typer.Context) -> bool:
    opts = ctx.find_object(GlobalOptions)
    return bool(opts and opts.verbose)


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="finsight")
