"""Reaching the MLflow store: one URI rule, a bounded check, an MlflowClient.

``registry.tracking_uri`` (or ``--tracking-uri``) names the store; by default
``sqlite:///<workdir>/mlflow.db`` with artifacts under ``<workdir>/mlartifacts``, so nothing
lands in ``./mlruns``. An ``http(s)://`` server is asked for ``/health`` first, for at most
``registry.timeout_s``: MLflow's own client retries a dead server with backoff for minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from finsight.errors import RegistryError
from finsight.extras import require
from finsight.quiet import quiet

if TYPE_CHECKING:
    from finsight.config import Settings

SERVER_SCHEMES = ("http", "https", "databricks")
# Once a server has answered, a request that fails mid-way is retried briefly, not for minutes;
# no download progress bars on stderr.
_MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "120", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def scheme(uri: str) -> str:
    return uri.split(":", 1)[0].lower() if ":" in uri else ""


def is_server(uri: str) -> bool:
    return scheme(uri) in SERVER_SCHEMES


def artifact_root(settings: Settings) -> str | None:
    """A new experiment's artifact location: ``<workdir>/mlartifacts`` for a local store; None for
    a tracking server, which stores (or proxies) artifacts itself; a client path there would
    leave them on this machine."""
    if is_server(settings.tracking_uri()):
        return None
    return (Path(settings.workdir) / "mlartifacts").resolve().as_uri()


def check_server(uri: str, *, timeout_s: float, hint: str) -> None:
    """Fail within about ``timeout_s`` seconds when an http(s) tracking server does not answer.

    ``hint`` finishes the error message (what the user can do instead).
    """
    import urllib.error
    import urllib.request

    if scheme(uri) not in ("http", "https"):
        return
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=max(0.5, min(2.0, left))).close()
            return
        except urllib.error.HTTPError:
            return  # it answered: a server without /health (or behind auth) is still reachable
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
        if deadline - time.monotonic() < 0.5:
            raise RegistryError(f"MLflow tracking server at registry.tracking_uri={uri} does not answer "
                                f"({reason}, tried for {timeout_s:g} s); start it, fix the URI, or {hint}")
        time.sleep(0.5)


def require_mlflow(action: str, *, instead: str | None = None) -> None:
    """The serving image installs finsight without mlflow: a registry call there is one line
    naming what to install, not an ImportError traceback."""
    require("mlflow", needed_by=f"cannot {action}: the model registry", instead=instead, error=RegistryError)


@contextlib.contextmanager
def mlflow_env(action: str, *, instead: str | None = None) -> Iterator[None]:
    """For the duration of a registry call (``action``, for the error when mlflow is missing):
    bounded HTTP retries, no progress bars (the user's own MLFLOW_* variables win), and no
    mlflow or alembic INFO lines on the terminal."""
    require_mlflow(action, instead=instead)
    import mlflow  # noqa: F401  (configures its loggers on import: quieten them after)

    added = {k: v for k, v in _MLFLOW_ENV.items() if k not in os.environ}
    os.environ.update(added)
    try:
        with quiet("alembic", "mlflow", level=logging.WARNING):
            yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


def open_client(settings: Settings, *, create: bool = False):
    """An ``MlflowClient`` on the settings' store, checked to be reachable.

    ``create`` False (reading: list, resolve, alias) refuses a local sqlite store that does not
    exist yet instead of creating an empty one.
    """
    uri = settings.tracking_uri()
    check_server(uri, timeout_s=settings.registry.timeout_s,
                 hint="pass another --tracking-uri (registry.tracking_uri)")
    db = sqlite_file(uri)
    if db is not None:
        if create:
            db.parent.mkdir(parents=True, exist_ok=True)
        elif not db.is_file():
            raise RegistryError(f"no model registry at registry.tracking_uri={uri} (the file does not "
                                "exist); register a model first (`finsight register MODEL`) or pass "
                                "--tracking-uri of the registry that holds it")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """A local sqlite store is created (schema migrations) on first use; two first trainings
    in one workdir must not both create it. Parallel jobs take turns for that moment only."""
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    from filelock import FileLock

    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{db}.lock", timeout=300):
        yield


def mlflow_error(action: str, uri: str, exc: Exception) -> RegistryError:
    """One line for an MLflow failure (it raises MlflowException, SQLAlchemy and OS errors)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return RegistryError(f"cannot {action} at registry.tracking_uri={uri} ({type(exc).__name__}: {text})")


@contextlib.contextmanager
def fluent_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (log_model, load_model, download) at ``uri`` for a block.

    ``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI (and the registry's); both the
    module state and the variables are put back, so later calls behave as if never set.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {name: os.environ.get(name) for name in names}
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
