"""MLflow run tracking for `finsight train`, through Lightning's MLflow logger.

The default store is ``sqlite:///<workdir>/mlflow.db`` with artifacts under
``<workdir>/mlartifacts``, so a run writes nothing into the current directory.
With an ``http(s)://`` tracking server, artifacts go where the server puts them.
With ``registry.track_runs: false`` nothing here is called and mlflow is never imported.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from finsight.errors import RegistryError
from finsight.registry import store
from finsight.registry.store import artifact_root

if TYPE_CHECKING:
    from finsight.config import Settings


def flat_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: ``train.learning_rate -> '2e-05'``."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flat_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:6000]
    return flat


def open_run(settings: Settings, *, run_name: str, run_id: str | None = None):
    """A Lightning MLFlowLogger on a new run (or the run ``run_id`` when resuming)."""
    uri = settings.tracking_uri()
    hint = "pass --set registry.track_runs=false"
    store.check_server(uri, timeout_s=settings.registry.timeout_s, hint=hint)
    with store.mlflow_env("track this training run", instead=hint):
        from lightning.pytorch.loggers import MLFlowLogger

        for attempt in range(_ATTEMPTS):
            with store.store_lock(uri):
                logger = MLFlowLogger(experiment_name=settings.registry.experiment, run_name=run_name,
                                      tracking_uri=uri, artifact_location=artifact_root(settings), run_id=run_id)
                try:
                    logger.run_id  # creates the store, experiment and run now, so failures surface here
                    return logger
                except Exception as exc:  # mlflow raises many types (MlflowException, SQLAlchemy, OSError)
                    error = exc
            if attempt + 1 < _ATTEMPTS:
                time.sleep(0.5 * (attempt + 1))  # a process outside finsight's lock raced us: retry
    raise RegistryError(f"cannot open an MLflow run at registry.tracking_uri={uri} "
                        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                        "fix the URI or pass --set registry.track_runs=false")


_ATTEMPTS = 3


def log_params(logger, params: Mapping[str, str]) -> dict[str, str]:
    """Log params; on a resumed run keep the first values and tag the changed ones.

    MLflow refuses to change a logged param, and a resume may raise e.g. max_epochs.
    Returns the changed params.
    """
    client, run_id = logger.experiment, logger.run_id
    existing = client.get_run(run_id).data.params
    new = {k: v for k, v in params.items() if k not in existing}
    changed = {k: v for k, v in params.items() if k in existing and existing[k] != v}
    from mlflow.entities import Param, RunTag

    items = [Param(k, v) for k, v in new.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100])
    if changed:
        client.log_batch(run_id, tags=[RunTag(f"resumed.{k}", v[:5000]) for k, v in changed.items()])
    return changed


def log_artifacts(logger, items: Iterable[tuple[Path, str | None]]) -> None:
    """Files and directories into the run's artifacts, each ``(path, artifact subdir or None)``."""
    client, run_id = logger.experiment, logger.run_id
    try:
        for path, sub in items:
            log = client.log_artifacts if Path(path).is_dir() else client.log_artifact
            log(run_id, str(path), artifact_path=sub)
    except Exception as exc:  # the artifact store may be a local dir, S3, ...: many error types
        raise RegistryError(f"cannot store artifacts of MLflow run {run_id} "
                            f"({type(exc).__name__}: {exc})") from None


def set_tags(logger, tags: Mapping[str, Any]) -> None:
    from mlflow.entities import RunTag

    logger.experiment.log_batch(logger.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
