"""Optional dependencies: a command that needs a package this install lacks ends in one line
naming what to install, never an ImportError traceback.

The serving image installs finsight with ``--no-deps`` and only what serving needs
(deploy/requirements/serve-cpu.txt): no pandas, torch or transformers; the triton client and the
server are extras. :func:`require` is the check a caller makes up front; the CLI turns any other
``ModuleNotFoundError`` of a package listed here into the same line (:func:`missing_error`).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from finsight.errors import FinsightError

# top-level module -> what `pip install` takes to get it
INSTALL = {
    "mlflow": "mlflow",
    "tritonclient": "'finsight[triton]'",
    "onnxruntime": "'finsight[cpu]' (or 'finsight[gpu]')",
    "litestar": "'finsight[serve]'",
    "uvicorn": "'finsight[serve]'",
    "pandas": "pandas pyarrow",
    "pyarrow": "pyarrow",
    "torch": "torch (the full install: pip install finsight)",
    "transformers": "transformers (the full install: pip install finsight)",
    "lightning": "lightning (the full install: pip install finsight)",
    "datasets": "datasets (the full install: pip install finsight)",
    "matplotlib": "matplotlib",
    "onnx": "onnx onnxscript",
}


def installed(module: str) -> bool:
    """Whether ``module``'s top-level package can be imported (without importing it)."""
    return importlib.util.find_spec(module.split(".")[0]) is not None


def message(module: str, needed_by: str, instead: str | None = None) -> str:
    top = module.split(".")[0]
    alternative = f", or {instead}" if instead else ""
    return (f"{needed_by} needs {top}, which this install lacks; "
            f"pip install {INSTALL.get(top, top)}{alternative}")


def require(module: str, *, needed_by: str, instead: str | None = None,
            error: type[FinsightError] = FinsightError) -> None:
    """Raise ``error`` (one line: who needs what, what to install) when ``module`` is missing."""
    if not installed(module):
        raise error(message(module, needed_by, instead))


def import_optional(module: str, *, needed_by: str, error: type[FinsightError] = FinsightError) -> ModuleType:
    """``import module``, or ``error`` naming what to install when its package is missing."""
    require(module, needed_by=needed_by, error=error)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:  # the package without the part of it that module needs (an extra)
        raise error(message(module, needed_by)) from None


def missing_error(exc: ModuleNotFoundError, needed_by: str) -> FinsightError | None:
    """The one-line error for ``exc`` when it is a listed package that is not installed; None for
    anything else (a broken install, a bug: its traceback stays)."""
    top = (exc.name or "").split(".")[0]
    if top not in INSTALL or installed(top):
        return None
    return FinsightError(message(top, needed_by))
