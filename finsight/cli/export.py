"""`finsight export MODEL`: ONNX / TorchScript artifacts, each validated against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from finsight.cli._app import app, err, out, print_json, setting, settings

if TYPE_CHECKING:
    from finsight.export.quantize import SearchSummary


@app.command("export")
def export(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Trained model dir (e.g. <run>/model) or hub id."),
    fmt: Optional[Literal["onnx", "torchscript"]] = setting("export.format", "--format"),
    quantize: Optional[Literal["none", "int8"]] = setting("export.quantize", "--quantize"),
    optimize: Optional[bool] = setting("export.optimize", "--optimize/--no-optimize"),
    fp16: Optional[bool] = setting("export.fp16", "--fp16/--no-fp16"),
    opset: Optional[int] = setting("export.opset", "--opset"),
    validate_data: Optional[Path] = setting("export.validate_data", "--validate-data"),
    out_dir: Optional[Path] = setting("export.out", "--out"),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest (with the validation report) as JSON."),
) -> None:
    """Export a model to ONNX (optimised, fp16, int8) or TorchScript; validate it on real text.

    A failed validation gate prints the report, marks the artifact invalid and exits 1.
    """
    from finsight.export import export_model

    flags = {"export.format": fmt, "export.quantize": quantize, "export.optimize": optimize,
             "export.fp16": fp16, "export.opset": opset, "export.validate_data": validate_data,
             "export.out": out_dir}
    resolved = settings(ctx, flags)

    def report(manifest: dict[str, Any]) -> None:
        if as_json:
            print_json(manifest)
        else:
            render(manifest, out if manifest["valid"] else err)

    export_model(model, resolved, on_step=lambda step: err.print(f"[dim]{step}...[/]"), on_report=report)


def render(manifest: dict[str, Any], console: Console) -> None:
    """The summary table (one block per output), the gates, and where the artifact is."""
    from finsight.model.formats import title

    report = manifest["validation"]
    data = report["data"]
    status = "[bold green]valid[/]" if manifest["valid"] else "[bold red]INVALID[/]"
    table = Table(title=f"finsight export: {title(manifest['format'])} {manifest['precision']}, {status}",
                  show_header=False, title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value", overflow="fold")
    fused = ", ".join(f"{name} x{n}" for name, n in (manifest.get("fusions") or {}).items())
    table.add_row("format", f"{title(manifest['format'])} {manifest['precision']}"
                  + (f", opset {manifest['opset']}" if manifest.get("opset") else "")
                  + (f", fused {fused}" if fused else ""))
    table.add_row("size", f"{manifest['size_mb']:.1f} MB")
    table.add_row("validated on", f"{data['rows']} rows ({data['kind']}), batch sizes "
                  + ", ".join(str(b) for b in report["batch_sizes"]))
    for output in report["outputs"]:
        by_size = ", ".join(f"batch {size}: {fig['max_abs_diff']:.2e}"
                            for size, fig in output["by_batch_size"].items() if fig.get("rows"))
        table.add_row(f"{output['name']} max |diff|", f"{output['max_abs_diff']:.2e} ({by_size})")
        table.add_row("label agreement", f"{output['agreement']:.2%} "
                      f"({output['disagreements']} of {output['rows']} differ)")
        table.add_row("macro-F1 torch -> export", _f1(output))
        worst = output["worst_row"]
        table.add_row("largest diff", f"{worst['abs_diff']:.2e} on row {worst['row']}: {worst['text']!r}")
    table.add_row("time", f"{manifest['seconds']:.1f} s")
    console.print(table)
    gates = Table(title="validation gates", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("gate", "value", "limit", "result", "config key"):
        gates.add_column(column, overflow="fold")
    for gate in report["gates"]:
        verdict = {True: "[green]pass[/]", False: "[bold red]FAIL[/]", None: "[dim]skipped[/]"}[gate["passed"]]
        value = "n/a" if gate["value"] is None else f"{gate['value']:.4g}"
        gates.add_row(gate["name"], value, f"{gate['rule']} {gate['limit']:g}",
                      verdict + (f" ({gate['note']})" if gate.get("note") else ""), f"[dim]{gate['key']}[/]")
    console.print(gates)
    from finsight.export.quantize import SearchSummary

    search = SearchSummary.from_manifest(manifest)
    if search is not None:
        render_search(search, console)
    console.print(f"wrote {manifest['path']} [dim](validated on {data['source']})[/]")


def render_search(search: SearchSummary, console: Console) -> None:
    """The int8 candidates tried, each with its gate figures and speed, and the choice."""
    table = Table(title=f"int8 search ({search.seconds:.0f} s; fp32 graph "
                        f"{search.fp32_texts_per_s:,.0f} texts/s)", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("candidate", "fp32 nodes", "agreement", "F1 change", "texts/s", "vs fp32", "gates"):
        table.add_column(column, overflow="fold", no_wrap=column == "candidate")
    for c in search.candidates:
        chosen = c.name == search.chosen
        if c.error:
            table.add_row(c.name, "", "", "", "", "", f"[red]error: {c.error}[/]")
            continue
        change = "n/a" if c.macro_f1_change is None else f"{c.macro_f1_change:+.4f}"
        verdict = "[green]pass[/]" if c.passed else "[red]fail[/]"
        table.add_row(("[bold]* " if chosen else "") + c.name + ("[/]" if chosen else ""),
                      str(len(c.fp32_nodes)), f"{c.agreement:.2%}", change,
                      f"{c.texts_per_s:,.0f}", f"{c.speedup_vs_fp32:.2f}x", verdict)
    console.print(table)
    color = "green" if search.chosen else "yellow"
    console.print(f"[{color}]{search.reason}[/] [dim]({search.stopped})[/]")


def _f1(output: dict[str, Any]) -> str:
    if output.get("macro_f1_reference") is None:
        return "n/a (no labels in the validation data)"
    return (f"{output['macro_f1_reference']:.4f} -> {output['macro_f1_export']:.4f} "
            f"({output['macro_f1_change']:+.4f})")
