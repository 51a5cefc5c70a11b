"""`finsight serve`: the HTTP service over the same predictor `analyze` uses."""

from __future__ import annotations

from typing import Optional

import typer

from finsight.cli._app import app, settings


@app.command("serve")
def serve(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model dir, export dir, hub id or models:/name@alias."),
    backend: Optional[str] = typer.Option(
        None, "--backend", "-b", help="auto, torch, onnx, torchscript or triton."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (serve.host)."),
    port: Optional[int] = typer.Option(None, "--port", "-p", help="Port to bind (serve.port)."),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-w", help="Server processes, each with its own predictor (serve.workers)."),
) -> None:
    """Serve label, probabilities and sentiment over HTTP: /v1/predict, /v1/predict/batch, /v1/analyze."""
    from finsight.serve.server import run

    run(settings(ctx, {"predict.model": model, "predict.backend": backend, "serve.host": host,
                       "serve.port": port, "serve.workers": workers}))
