"""The `finsight` command line: parse, call one library function, render.

This package is the only place that prints and exits. Heavy libraries (torch,
transformers, mlflow, onnxruntime) are imported inside the commands that use them,
so `finsight --help` stays fast.
"""

from __future__ import annotations

import importlib

from finsight.cli._app import app, main  # noqa: F401

# One module per command; each registers itself on `app` when imported, in this order.
COMMANDS = ("config_cmd", "prep", "train", "evaluate", "export", "analyze", "explain", "register", "models", "serve",
            "triton", "pipeline")
for _module in COMMANDS:
    importlib.import_module(f"finsight.cli.{_module}")
