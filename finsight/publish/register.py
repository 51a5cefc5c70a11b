"""`finsight register`: a train output or an export becomes a new, tagged version of a registered model.

Order: check the artifact (labels, ``valid``, file hashes) before touching the store; log it as
a pyfunc model (in the run that trained it when that run is in this store, else in a new run of
``registry.experiment``); reload the stored model and check it scores like the local directory;
only then create the version and set the aliases. A failure before that leaves no version.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from finsight import __version__
from finsight.artifacts import MANIFEST, directory_sha256, read_manifest
from finsight.errors import ModelError, RegistryError
from finsight.io import read_json
from finsight.model.ref import Artifact, resolve_artifact
from finsight.quiet import quiet
from finsight.registry import store
from finsight.registry.refs import REGISTRY_PREFIX, check_aliases
from finsight.registry.versions import TAG
from finsight.results import RegisterResult

if TYPE_CHECKING:
    from finsight.config import Settings

_EVAL_KEYS = ("accuracy", "macro_f1", "loss", "n", "split", "data")
_VALIDATION_KEYS = ("rows", "max_abs_diff", "agreement", "macro_f1_change")


def register_model(model: str | Path, settings: Settings, *, aliases: Sequence[str] = (),
                   on_step: Callable[[str], None] | None = None) -> RegisterResult:
    """Register ``model`` as a new version of ``registry.model_name``; returns what was created."""
    step = on_step or (lambda message: None)
    artifact = local_artifact(model)
    check_artifact(artifact)
    check_aliases(aliases)
    name = settings.registry.model_name
    tags = version_tags(artifact, settings)
    uri = settings.tracking_uri()
    with store.mlflow_env(f"register {artifact.path}"):
        client = store.open_client(settings, create=True)
        try:
            # With a tracking server mlflow prints the run's URL on stdout when a run ends;
            # --json needs stdout for JSON alone, so that chatter goes to stderr. log_model logs
            # hints and a cloudpickle caution on every call: errors only.
            with (store.fluent_uri(uri), quiet("mlflow", warnings_from=r"mlflow\."),
                  contextlib.redirect_stdout(sys.stderr)):
                return _register(client, artifact, settings, name=name, aliases=aliases, tags=tags, step=step)
        except (RegistryError, ModelError):
            raise
        except Exception as exc:  # MlflowException, SQLAlchemy, OS and HTTP errors
            raise store.mlflow_error(f"register {artifact.path} as '{name}'", uri, exc) from None


def local_artifact(model: str | Path) -> Artifact:
    """The artifact directory to register: a model dir, a train run dir (its model/) or an export dir."""
    ref = str(model)
    if ref.startswith(REGISTRY_PREFIX):
        raise ModelError(f"{ref} is already registered; to give a version another alias use "
                         "`finsight models alias NAME VERSION ALIAS`")
    path = Path(ref).expanduser()
    if path.is_dir() and not (path / "config.json").is_file() and (path / "model" / MANIFEST).is_file():
        path = path / "model"  # a train run dir
    if not path.is_dir():
        raise ModelError(f"{ref} is not a directory; register takes a train output (<run>/model) or "
                         "an export directory (finsight export)")
    return resolve_artifact(str(path))


def check_artifact(artifact: Artifact) -> None:
    """Refuse what must not be deployed: a failed export, changed files, labels finsight cannot map."""
    artifact.require_valid(forcible=False)
    artifact.verify_files()  # every file hashed: no stamp is trusted for what gets published
    artifact.label_order()  # labels must map onto negative/neutral/positive


# ---------------------------------------------------------------- tags


def version_tags(artifact: Artifact, settings: Settings) -> dict[str, str]:
    """What a version records about the artifact: format, labels, checks, data, origin."""
    manifest = artifact.manifest
    source = _source_manifest(manifest)
    tags: dict[str, Any] = {
        "kind": manifest.get("kind", "model"), "format": artifact.format,
        "precision": manifest.get("precision", "fp32"), "labels": ",".join(artifact.raw_labels()),
        "max_length": artifact.max_length(settings.model.max_length),
        "sha256": directory_sha256(artifact.path), "source": str(artifact.path),
        "finsight_version": __version__, "git_commit": git_commit(),
        "data_card_sha256": manifest.get("data_card_sha256") or source.get("data_card_sha256"),
        "train_run_id": manifest.get("mlflow_run_id") or source.get("mlflow_run_id"),
        # The recipe itself travels in the version's finsight.json; the tag makes it searchable.
        "cleaning": "default" if artifact.cleaning.assumed else json.dumps(artifact.cleaning.as_dict()),
    }
    if artifact.is_export:
        tags["valid"] = str(bool(manifest.get("valid"))).lower()
        outputs = (manifest.get("validation") or {}).get("outputs") or [{}]
        tags |= {f"validation.{k}": outputs[0].get(k) for k in _VALIDATION_KEYS}
        tags["validation.data"] = ((manifest.get("validation") or {}).get("data") or {}).get("kind")
    best_val = manifest.get("best_val") or source.get("best_val") or {}
    tags |= {f"train.val_{k}": v for k, v in best_val.items()}
    evaluation = find_evaluation(artifact, settings)
    if evaluation:
        tags |= {f"eval.{k}": evaluation.get(k) for k in _EVAL_KEYS}
    return {f"{TAG}{k}": _tag_value(v) for k, v in tags.items() if v is not None}


def _tag_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)[:5000]


def _source_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    source = manifest.get("source_model")
    if manifest.get("kind") == "export" and source and Path(source).is_dir():
        return read_manifest(source) or {}
    return {}


def find_evaluation(artifact: Artifact, settings: Settings) -> dict[str, Any] | None:
    """The newest `finsight evaluate` metrics.json of this artifact: beside it (``../eval*/``,
    ``../*/``) or in the default ``<workdir>/eval/``; test split first."""
    places = [artifact.path.parent / "*" / "metrics.json", artifact.path.parent / "eval*" / "*" / "metrics.json",
              Path(settings.workdir) / "eval" / "*" / "metrics.json"]
    found = []
    for pattern in places:
        for path in Path(pattern.anchor).glob(str(pattern.relative_to(pattern.anchor))):
            metrics = read_json(path, strict=False)
            model = metrics.get("model")
            if not model or "accuracy" not in metrics or not Path(model).is_dir():
                continue
            if Path(model).resolve() == artifact.path:
                found.append((metrics.get("split") == "test", path.stat().st_mtime, metrics))
    return max(found, key=lambda item: item[:2])[2] if found else None


def git_commit() -> str | None:
    """The commit of the finsight checkout this runs from (None when not a git checkout)."""
    import finsight

    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(finsight.__file__).parent,
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


# ---------------------------------------------------------------- MLflow


def _register(client, artifact: Artifact, settings: Settings, *, name: str, aliases: Sequence[str],
              tags: dict[str, str], step: Callable[[str], None]) -> RegisterResult:
    import mlflow

    from finsight.publish import pyfunc

    uri = settings.tracking_uri()
    train_run = _training_run(client, tags.get(f"{TAG}train_run_id"))
    with tempfile.TemporaryDirectory(prefix="finsight-register-") as tmp:
        if train_run is not None:
            run = mlflow.start_run(run_id=train_run)
        else:
            run = mlflow.start_run(experiment_id=_experiment(client, settings), run_name=f"register {name}")
        logged = False
        try:
            step(f"logging {artifact.path} as an MLflow pyfunc model")
            info = mlflow.pyfunc.log_model(
                name="model", python_model=pyfunc.FinsightModel(),
                artifacts={pyfunc.ARTIFACT_KEY: str(artifact.path)},
                code_paths=[pyfunc.stage_code(Path(tmp))], signature=pyfunc.signature(),
                input_example=pyfunc.input_example(_samples()[:2]),
                pip_requirements=pyfunc.pip_requirements(artifact.format))
            run_id, logged = run.info.run_id, True
        finally:
            # A failed upload must not mark the training run failed: its status is about training.
            mlflow.end_run(status="FINISHED" if logged or train_run is not None else "FAILED")
    artifact_path = info.flavors["python_function"]["artifacts"][pyfunc.ARTIFACT_KEY]["path"]
    step("checking that the stored model scores like the directory")
    verify_stored(info.model_uri, artifact, settings)
    step(f"creating a version of '{name}'")
    _ensure_registered_model(client, name)
    tags = tags | {f"{TAG}artifact_path": artifact_path}
    version = client.create_model_version(name, source=info.model_uri, run_id=run_id, tags=tags,
                                          model_id=info.model_id)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version.version)
    return RegisterResult(name=name, version=int(version.version), aliases=list(aliases),
                          model_uri=f"{REGISTRY_PREFIX}{name}/{version.version}", source=str(artifact.path),
                          format=artifact.format, precision=tags.get(f"{TAG}precision"),
                          run_id=run_id, training_run_linked=train_run is not None,
                          logged_model=info.model_uri, tracking_uri=uri, tags=tags)


def verify_stored(model_uri: str, artifact: Artifact, settings: Settings) -> None:
    """The stored pyfunc, loaded back by plain MLflow, must give the directory's labels and probabilities."""
    import mlflow

    from finsight.predict import load_predictor
    from finsight.predict.scores import PROB_COLUMNS
    from finsight.publish import pyfunc

    texts = list(_samples())
    # load_model downloads a server's model into a new temp dir of its own and keeps it: ~26 MB
    # left in TMPDIR by every register run, unless it is told where (and that goes with it)
    with tempfile.TemporaryDirectory(prefix="finsight-verify-") as tmp:
        stored = mlflow.pyfunc.load_model(model_uri, dst_path=tmp).predict(texts)
    own = load_predictor(str(artifact.path), settings, backend=pyfunc.own_backend(artifact.path))
    local = pyfunc.score_texts(own, pyfunc.text_column(texts))
    same_labels = (stored["label"].astype(str) == local["label"].astype(str)).all()
    diff = float(np.abs(stored[list(PROB_COLUMNS)].to_numpy(float) - local[list(PROB_COLUMNS)].to_numpy(float)).max())
    if not same_labels or diff > 1e-5:
        raise RegistryError(f"the model stored at {model_uri} does not score like {artifact.path} "
                            f"(labels equal: {bool(same_labels)}, max |prob diff| {diff:.2e}); no "
                            "version was created")


def _samples() -> tuple[str, ...]:
    from finsight.samples import SAMPLE_SENTENCES

    return SAMPLE_SENTENCES[:16]


def _training_run(client, run_id: str | None) -> str | None:
    """``run_id`` when that run lives (not deleted) in this store, else None."""
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001  (not found: MlflowException; other stores raise others)
        return None
    return run_id if run.info.lifecycle_stage == "active" else None


def _experiment(client, settings: Settings) -> str:
    name = settings.registry.experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=store.artifact_root(settings))


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, tags={f"{TAG}created_by": f"finsight {__version__}"})
