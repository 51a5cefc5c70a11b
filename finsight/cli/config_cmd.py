"""`finsight config show|init`."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from finsight.cli._app import HelpGroup, app, out, print_json, settings

config_app = typer.Typer(cls=HelpGroup, help="Show or write the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

_SOURCE_STYLE = {"default": "dim", "file": "cyan", "env": "magenta", "cli": "bold green"}


@config_app.command("show")
def show(
    ctx: typer.Context,
    key: Optional[str] = typer.Argument(None, help="One dotted key (or a section) to explain."),
    as_json: bool = typer.Option(False, "--json", help="Print {values, sources} as JSON."),
) -> None:
    """Print the resolved config and where each value came from."""
    from finsight.config import RENAMED, all_keys, deprecation_message, explain_key, field_info, settings_as_dict

    resolved = settings(ctx)
    values = settings_as_dict(resolved)
    sources = resolved.sources
    keys = explain_key(key) if key else all_keys()  # a deprecated or unknown key raises here
    if as_json:
        if key:
            print_json({"values": {k: _value(values, k) for k in keys},
                        "sources": {k: sources[k] for k in keys}})
        else:
            print_json({"values": values, "sources": sources})
        return
    if key in RENAMED:
        out.print(f"[yellow]{escape(deprecation_message(key))}[/]")
    # One entry per key, its description wrapped under it: readable at 80 columns, and a key
    # is never broken (a table squeezes four columns and folds keys mid-word).
    for name in keys:
        style = _SOURCE_STYLE[sources[name]]
        # Wrapped here, not by rich (whose folding leaves trailing spaces); the key stays whole.
        width = max(out.width, 40)
        plain = textwrap.wrap(f"{name} = {_value(values, name)!r}", width=width, subsequent_indent="  ",
                              break_on_hyphens=False)
        lines = [f"[bold]{escape(name)}[/]{escape(plain[0][len(name):])}", *map(escape, plain[1:])]
        source = f"({sources[name]})"
        if len(plain[-1]) + 2 + len(source) <= width:
            lines[-1] += f"  [{style}]{source}[/]"
        else:
            lines.append(f"  [{style}]{source}[/]")
        for line in lines:
            out.print(line, soft_wrap=True)
        for line in textwrap.wrap(field_info(name).description or "", width=max(out.width, 40) - 4,
                                  break_long_words=False, break_on_hyphens=False):
            out.print(f"    [dim]{escape(line)}[/]")


def _value(values: dict, key: str):
    head, _, tail = key.partition(".")
    return values[head][tail] if tail else values[head]


@config_app.command("init")
def init(
    path: Optional[Path] = typer.Argument(
        None, help="Where to write; default: print to stdout.", dir_okay=False),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing file."),
) -> None:
    """Write a YAML file with every key, its default and a one-line comment."""
    from finsight.config import default_yaml
    from finsight.errors import ConfigError
    from finsight.io import atomic_write_text

    text = default_yaml()
    if path is None:
        typer.echo(text, nl=False)
        return
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to overwrite it")
    atomic_write_text(path, text)
    out.print(f"wrote {path}")
