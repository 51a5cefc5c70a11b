"""`finsight serve`: the HTTP service over the same predictor `analyze` uses."""

from __future__ import annotations

from typing import Optional

import typer

from finsight.cli._app import app, setting, settings


@app.command("serve")
def serve(
    ctx: typer.Context,
    model: Optional[str] = setting("predict.model", "--model", "-m"),
    backend: Optional[str] = setting("predict.backend", "--backend", "-b"),
    host: Optional[str] = setting("serve.host", "--host"),
    port: Optional[int] = setting("serve.port", "--port", "-p"),
    workers: Optional[int] = setting("serve.workers", "--workers", "-w"),
) -> None:
    """Serve label, probabilities and sentiment over HTTP: /v1/predict, /v1/predict/batch, /v1/analyze."""
    from finsight.serve.server import run

    run(settings(ctx, {"predict.model": model, "predict.backend": backend, "serve.host": host,
                       "serve.port": port, "serve.workers": workers}))
