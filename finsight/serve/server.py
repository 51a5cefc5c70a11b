"""Run the app under uvicorn: load the predictor, log JSON lines, shut down gracefully.

On SIGTERM/SIGINT uvicorn stops accepting connections and waits (up to
``serve.shutdown_timeout_s``) for requests in progress; the app's shutdown hook then lets the
micro-batcher answer everything still queued before the worker thread exits.

uvicorn closes an idle keep-alive connection, but not one that stalls before a whole request
has arrived (it arms no timer until a first response): :func:`protocol` adds that bound
(``serve.read_timeout_s``, finsight/serve/protocol.py).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finsight.errors import ConfigError
from finsight.serve.defaults import for_serving

if TYPE_CHECKING:
    from litestar import Litestar

    from finsight.config import Settings

SETTINGS_ENV = "FINSIGHT_SERVE_SETTINGS_JSON"  # how worker processes get the parent's settings
SHARED_DIR_ENV = "FINSIGHT_SERVE_SHARED_DIR"  # a directory the worker processes share (rate limit)


class JsonLines(logging.Formatter):
    """Access lines are JSON already; other records become {"ts", "level", "logger", "msg"}."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "finsight.serve.access":
            return record.getMessage()
        line = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                "msg": record.getMessage()}
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    for name in ("finsight.serve", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def protocol(read_timeout_s: float) -> Any:
    """uvicorn's ``http`` option: its httptools protocol, bounded by ``read_timeout_s``."""
    from finsight.serve.protocol import ReadTimeoutProtocol

    return functools.partial(ReadTimeoutProtocol, read_timeout_s=read_timeout_s)


def build_app(settings: Settings, *, shared_dir: Path | None = None) -> Litestar:
    """Load the predictor (``--model`` may be a ``models:/`` ref) with the serving defaults
    (:func:`~finsight.serve.defaults.for_serving`) and build the app."""
    import threading

    from finsight.predict import load_predictor

    # litestar and the app module take ~0.5 s to import: do it while the model loads.
    importer = threading.Thread(target=__import__, args=("finsight.serve.app",), daemon=True)
    importer.start()
    started = time.perf_counter()
    settings = for_serving(settings)
    try:
        predictor = load_predictor(None, settings)
    finally:
        importer.join()
    from finsight.serve.app import create_app

    logging.getLogger("finsight.serve").info(
        "loaded %s (%s backend, %s) in %.2f s", predictor.source, predictor.name, predictor.device,
        time.perf_counter() - started)
    return create_app(settings, predictor, shared_dir=shared_dir)


def share_with_workers(settings: Settings) -> None:
    """Hand ``settings`` to the worker processes uvicorn starts, sources included: the serving
    defaults apply only to keys the user left unset, so a worker must know which those are."""
    os.environ[SETTINGS_ENV] = settings.to_json()


def worker_settings() -> Settings:
    """The settings :func:`share_with_workers` handed over, as the parent had them."""
    from finsight.config import Settings

    return Settings.from_json(os.environ[SETTINGS_ENV])


def app_from_env() -> Litestar:
    """uvicorn factory for ``serve.workers`` > 1: each worker process loads its own predictor."""
    configure_logging()
    shared = os.environ.get(SHARED_DIR_ENV)
    return build_app(worker_settings(), shared_dir=Path(shared) if shared else None)


def run(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("finsight serve needs the serve extra: pip install 'finsight[serve]'") from None
    opts = settings.serve
    configure_logging()
    common = dict(host=opts.host, port=opts.port, log_config=None, access_log=False,
                  timeout_graceful_shutdown=opts.shutdown_timeout_s, server_header=False,
                  http=protocol(opts.read_timeout_s))
    # SIGTERM is the normal way a server is stopped (kill, Kubernetes): uvicorn drains, then
    # re-raises the signal for the handler it found. The CLI's handler would turn that into
    # "terminated", exit 143; here a drained shutdown is a clean exit 0.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        if opts.workers > 1:
            from finsight.predict import checked_artifact

            # Each worker loads its own predictor; a refused model must be one line and exit 1
            # here, not a traceback and a restart in every worker.
            checked_artifact(None, for_serving(settings))
            share_with_workers(settings)
            # One directory for the workers' shared state: serve.rate_limit counts across them.
            shared = tempfile.mkdtemp(prefix="finsight-serve-")
            os.environ[SHARED_DIR_ENV] = shared
            uvicorn.run("finsight.serve.server:app_from_env", factory=True, workers=opts.workers, **common)
        else:
            uvicorn.run(build_app(settings), **common)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if os.environ.get(SHARED_DIR_ENV):
            shutil.rmtree(os.environ.pop(SHARED_DIR_ENV), ignore_errors=True)
