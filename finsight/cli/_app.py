"""The typer app, global options, and the one place that turns errors into exit codes."""

from __future__ import annotations

import json
import signal
import sys
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Mapping, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from finsight import __version__
from finsight.errors import FinsightError, FinsightWarning

# Human output goes to stdout; progress, warnings and errors to stderr, so that
# `--json` output on stdout stays machine-readable.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class GlobalOptions:
    config: Optional[Path] = None
    overrides: list[str] = field(default_factory=list)
    verbose: bool = False


class Terminated(BaseException):
    """SIGTERM (kill, Kubernetes, a CI timeout) as an exception, so that `finally` blocks and
    context managers remove temp files the way they do on Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


class _sigterm_unwinds:
    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, _raise_terminated)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class _warnings_shown:
    """The library's FinsightWarnings (it never prints) as yellow lines on stderr, every time."""

    def __enter__(self):
        self._saved = warnings.catch_warnings()
        self._saved.__enter__()
        warnings.simplefilter("always", FinsightWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, FinsightWarning):
                err.print(f"[yellow]warning:[/] {escape(str(message))}")
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show

    def __exit__(self, *exc) -> None:
        self._saved.__exit__(*exc)


class HelpGroup(TyperGroup):
    """A command group whose help lists commands in registration order, none cut off."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # registration order, not alphabetical

    def format_commands(self, ctx: click.Context, formatter) -> None:
        """Each command with its first sentence, wrapped rather than cut off with '...'."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands[name]
            if not cmd.hidden:
                text = (cmd.short_help or cmd.help or "").strip().split("\n\n")[0]
                rows.append((name, " ".join(text.split()).split("; ")[0].rstrip(".")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _missing_package(ctx: click.Context, exc: ModuleNotFoundError) -> None:
    """An optional package this install lacks (the serving image has no pandas) ends as a
    FinsightError does: one red line naming what to install, exit 1 (``-v``: the traceback
    first). Any other missing module is a bug or a broken install: its traceback stays."""
    from finsight.extras import missing_error

    missing = missing_error(exc, needed_by=f"finsight {ctx.invoked_subcommand or ctx.info_name}")
    if missing is None:
        raise exc
    opts = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
    if opts.verbose:
        err.print(escape("".join(traceback.format_exception(exc))), end="")
    err.print(f"[bold red]error:[/] {escape(str(missing))}")
    raise typer.Exit(1) from None


class FinsightGroup(HelpGroup):
    """Runs every command; expected errors end as one red line on stderr and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _sigterm_unwinds(), _warnings_shown():
                return super().invoke(ctx)
        except Terminated:
            err.print("[red]terminated[/]")
            raise typer.Exit(143) from None
        except FinsightError as exc:
            opts = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
            if opts.verbose:
                err.print(escape("".join(traceback.format_exception(exc))), end="")
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]")
            raise typer.Exit(130) from None
        except ModuleNotFoundError as exc:
            _missing_package(ctx, exc)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """Global options may also follow the command: `finsight train ... --set k=v -v`.

        They are taken out of the command's arguments before it parses them, and join the
        ones given before it: one precedence, later `--set` wins. A command that defines
        an option of the same name keeps it.
        """
        name, cmd, rest = super().resolve_command(ctx, args)
        leaf, depth = cmd, 0
        while isinstance(leaf, TyperGroup) and depth < len(rest) and rest[depth] in leaf.commands:
            leaf, depth = leaf.commands[rest[depth]], depth + 1
        describe_settings(leaf)
        own = {opt for param in leaf.params for opt in (*param.opts, *param.secondary_opts)}
        kept = rest[:depth]
        late = _late_globals(ctx, rest[depth:], own, kept)
        ctx.params["overrides"] = [*(ctx.params.get("overrides") or []), *late["overrides"]]
        ctx.params["verbose"] = ctx.params.get("verbose") or late["verbose"]
        if late["config"] is not None:
            before = ctx.params.get("config")
            if before is not None and Path(before) != late["config"]:
                ctx.fail(f"--config given twice ({before} and {late['config']}); pass one")
            ctx.params["config"] = late["config"]
        return name, cmd, kept


# The help of a flag declared with setting() until describe_settings() fills it in: the settings
# model is imported only for the command that runs (importing it for every `finsight --help`
# would double that command's time).
_SETTING_HELP = "finsight-setting:"


def setting(key: str, *flags: str, note: str = "", **kw: Any) -> Any:
    """A flag that sets config key ``key``: its help is that key's description in
    finsight/config.py, so ``--help`` and configs/default.yaml cannot disagree. ``note`` adds
    what only the flag has (repeatable, comma-separated); the flag's default is "not given"."""
    return typer.Option(None, *flags, help=f"{_SETTING_HELP}{key}\n{note}", **kw)


def setting_help(key: str, note: str = "") -> str:
    """'text column; None tries ...' -> 'Text column; None tries ... (data.text_column).'"""
    from finsight.config import field_info

    text = field_info(key).description
    return f"{text[:1].upper()}{text[1:]}{'; ' + note if note else ''} ({key})."


def setting_key(param: click.Parameter) -> str | None:
    """The config key a flag declared with setting() sets (until describe_settings() has filled
    in its help), else None."""
    return _declared(param)[0]


def describe_settings(command: click.Command) -> None:
    """Fill in the help of ``command``'s flags declared with setting(); FinsightGroup does it
    before a command runs or shows its help."""
    for param in command.params:
        key, note = _declared(param)
        if key:
            param.help = setting_help(key, note)


def _declared(param: click.Parameter) -> tuple[str | None, str]:
    help_text = getattr(param, "help", None) or ""
    if not help_text.startswith(_SETTING_HELP):
        return None, ""
    key, _, note = help_text[len(_SETTING_HELP):].partition("\n")
    return key, note


_VALUED = {"--set": "overrides", "-s": "overrides", "--config": "config", "-c": "config"}
_FLAGS = ("--verbose", "-v")


def _late_globals(ctx: click.Context, args: list[str], own: set[str], kept: list[str]) -> dict:
    """Split global options out of ``args`` (appending the rest to ``kept``)."""
    late: dict[str, Any] = {"overrides": [], "config": None, "verbose": False}
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            kept.append(token)
            kept.extend(tokens)
            break
        flag, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if flag in own or (flag not in _VALUED and flag not in _FLAGS):
            kept.append(token)
        elif flag in _FLAGS:
            late["verbose"] = True
        else:
            if not eq:
                value = next(tokens, None)
                if value is None:
                    ctx.fail(f"Option '{flag}' requires an argument.")
            if _VALUED[flag] == "overrides":
                late["overrides"].append(value)
            else:
                late["config"] = Path(value)
    return late


app = typer.Typer(
    cls=FinsightGroup,
    name="finsight",
    help="Financial sentiment analysis around FinBERT: prep, train, evaluate, export, analyze, "
         "register, serve, triton, pipeline.\n\n"
         "The options below may also follow the command: finsight train ... --set k=v -v. "
         "`finsight config show KEY` explains a config key.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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
