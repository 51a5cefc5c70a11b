"""`finsight triton build|check`: a Triton model repository that serves raw text, and its check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

import typer
from rich.table import Table

from finsight.cli._app import app, err, out, print_json, setting, settings

if TYPE_CHECKING:
    from finsight.results import TritonCheckResult

triton_app = typer.Typer(help="Triton Inference Server: build a model repository, check it in a real server.",
                         no_args_is_help=True)
app.add_typer(triton_app, name="triton")


@triton_app.command("build", short_help="Write a Triton repository that serves raw text.")
def build(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="ONNX export dir, model dir with a valid ONNX export beside it, "
                                "or models:/name@alias."),
    repo: Optional[Path] = setting("triton.repository", "--repo"),
    name: Optional[str] = setting("triton.model_name", "--name"),
    max_batch_size: Optional[int] = setting("triton.max_batch_size", "--max-batch-size"),
    instances: Optional[int] = setting("triton.instances", "--instances"),
    kind: Optional[Literal["cpu", "gpu"]] = setting("triton.kind", "--kind"),
    classifier_backend: Optional[Literal["onnxruntime", "python"]] = setting(
        "triton.classifier_backend", "--classifier-backend"),
    as_json: bool = typer.Option(False, "--json", help="Print the repository manifest as JSON."),
) -> None:
    """Write a Triton repository: tokenizer, ONNX classifier, postprocess and an ensemble taking raw text."""
    from finsight.triton.repository import build_repository

    resolved = settings(ctx, {
        "triton.repository": repo, "triton.model_name": name, "triton.max_batch_size": max_batch_size,
        "triton.instances": instances, "triton.kind": kind,
        "triton.classifier_backend": classifier_backend})
    built = build_repository(model, resolved, on_step=lambda step: err.print(f"[dim]{step}...[/]"))
    if as_json:
        print_json(built.as_dict())
        return
    table = Table(title=f"finsight triton build: {built.name}", show_header=False, title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("models", ", ".join(built.models))
    table.add_row("classifier", f"{built.classifier_backend}, {built.instances} x "
                  f"{built.instance_kind}, max batch {built.max_batch_size}")
    table.add_row("from", f"{built.source} ({built.source_precision}, max_length {built.max_length})")
    table.add_row("configs", "every config.pbtxt parsed against Triton's model_config.proto")
    out.print(table)
    out.print(f"wrote {built.out} [dim](see its README.md; check it with "
              f"`finsight triton check --repo {built.out}`)[/]")


@triton_app.command("check", short_help="Serve the repository and compare with ONNX.")
def check(
    ctx: typer.Context,
    repo: Optional[Path] = setting("triton.repository", "--repo"),
    url: Optional[str] = typer.Option(
        None, "--url", help="Use the server at host:port instead of starting a tritonserver here."),
    protocol: Optional[Literal["http", "grpc"]] = setting("triton.protocol", "--protocol"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Serve the repository in a real tritonserver, send real texts, compare with the local ONNX predictor.

    Exits 1 when a probability differs by more than triton.max_abs_diff or a label differs.
    """
    from finsight.triton.check import check_repository, raise_if_failed
    from finsight.triton.repository import default_repository

    resolved = settings(ctx, {"triton.repository": repo, "triton.protocol": protocol})
    report = check_repository(str(default_repository(resolved)), resolved, url=url,
                              on_step=lambda step: err.print(f"[dim]{step}...[/]"))
    if as_json:
        print_json(report.as_dict())
    else:
        _render(report)
    raise_if_failed(report)


def _render(report: TritonCheckResult) -> None:
    status = "[bold green]pass[/]" if report.passed else "[bold red]FAIL[/]"
    table = Table(title=f"finsight triton check: {report.model}, {status}", show_header=False,
                  title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value", overflow="fold")
    where = "started here" if report.started_server else "given by --url"
    table.add_row("server", f"{report.server} ({report.protocol}, {where})")
    table.add_row("compared with", f"local ONNX predictor on {report.source}")
    table.add_row("texts", f"{report.rows} ({report.truncated_rows} longer than max_length)")
    by_size = ", ".join(f"batch {size}: {fig['max_abs_diff']:.2e}"
                        for size, fig in report.by_batch_size.items())
    table.add_row("max |prob diff|", f"{report.max_abs_diff:.2e} "
                  f"(limit {report.max_abs_diff_limit:g}; {by_size})")
    table.add_row("label agreement", f"{report.agreement:.2%} ({report.disagreements} differ)")
    latency = report.latency_ms
    table.add_row("latency", f"one text: p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms; "
                  f"{latency['batch_of']} texts: {latency['batch']:.1f} ms")
    (out if report.passed else err).print(table)
