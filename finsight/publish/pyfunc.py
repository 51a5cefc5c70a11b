"""A registered finsight model as an MLflow ``pyfunc``: plain MLflow, a model server and
``mlflow.pyfunc.spark_udf`` load and run it without any finsight code of their own.

The MLflow model holds the finsight artifact directory (HF or ONNX/TorchScript + tokenizer +
``finsight.json``) as its artifact ``finsight`` and the finsight package as its code, so a host
needs only the pip requirements written beside it. ``predict`` takes a list of texts or a
one-column DataFrame (any column name) and returns the ``analyze`` columns: label, confidence,
p_negative, p_neutral, p_positive, sentiment (from :mod:`finsight.predict.scores`) and error; a
row with an empty or missing text gets label "" and NaN scores, and its reason in error. Texts
are cleaned with the recipe in the bundled ``finsight.json`` (the predictor's ``cleaning``), as
analyze and serve clean them.
Predictor settings (``predict.*`` keys without the prefix, e.g. ``{"num_threads": 1}``) can be
passed as ``model_config`` to ``load_model`` or ``spark_udf``.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import mlflow.pyfunc
import numpy as np

from finsight.predict.scores import SCORE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

ARTIFACT_KEY = "finsight"
OUTPUT_COLUMNS = (*SCORE_COLUMNS, "error")

# What the predictor imports, by artifact format (the packages a serving host installs).
_COMMON = ("mlflow", "numpy", "pandas", "pyarrow", "pydantic", "pydantic-settings", "pyyaml", "tokenizers")
_BY_FORMAT = {"hf": ("torch", "transformers", "safetensors"), "onnx": ("onnxruntime",),
              "torchscript": ("torch",)}


class FinsightModel(mlflow.pyfunc.PythonModel):
    """Runs :func:`finsight.predict.load_predictor` on the bundled artifact directory."""

    # MLflow would wrap predict for type-hint validation and warn on every load that it has
    # none; the explicit signature (an unnamed string column, so a list, a Series and any
    # one-column DataFrame all fit) validates inputs instead.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        from finsight.config import load_settings
        from finsight.predict import load_predictor

        config = dict(context.model_config or {})
        settings = load_settings(overrides=[f"predict.{key}={value}" for key, value in config.items()])
        path = context.artifacts[ARTIFACT_KEY]
        backend = config.get("backend") or own_backend(path)
        self._predictor = load_predictor(path, settings, backend=backend)

    def predict(self, context, model_input, params=None):
        return score_texts(self._predictor, text_column(model_input))


def own_backend(path: str | Path) -> str:
    """The backend that runs an artifact dir as it is: torch for a model dir, else its export format."""
    from finsight.model import resolve_artifact

    artifact = resolve_artifact(str(path))
    return "torch" if artifact.format == "hf" else artifact.format


def text_column(model_input: Any):
    """The texts of a pyfunc input: a DataFrame's ``text`` (or only) column, or a sequence."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if "text" in model_input.columns:
            return model_input["text"]
        if len(model_input.columns) != 1:
            raise ValueError(f"expected one text column (or one named 'text'), got columns "
                             f"{list(model_input.columns)}")
        return model_input.iloc[:, 0]
    if isinstance(model_input, str):
        model_input = [model_input]
    return pd.Series(list(model_input), dtype=object)


def score_texts(predictor, column) -> "pd.DataFrame":
    """The analyze columns for one column of texts; empty or missing texts get an ``error``."""
    from finsight.data.clean import texts_to_score
    from finsight.predict.scores import score_frame

    texts, errors = texts_to_score(column.tolist())
    valid = np.array([e is None for e in errors], dtype=bool)
    kept = [t for t, ok in zip(texts, valid) if ok]
    probs = predictor.predict(kept) if kept else np.zeros((0, 3), dtype=np.float32)
    frame = score_frame(probs, valid)
    # "No value" in the text columns is "" (as in analyze's CSV output), not None or NA:
    # spark_udf casts a string column with astype(str), which writes None as the text "None".
    frame["label"] = _texts(frame["label"].tolist())
    frame["error"] = _texts(list(errors))
    return frame


def _texts(values: list) -> "pd.Series":
    import pandas as pd

    return pd.Series(["" if v is None or v is pd.NA else str(v) for v in values], dtype=object)


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    # An unnamed input column: a list of texts, a Series or a DataFrame with any one column all fit.
    outputs = [ColSpec("string" if name in ("label", "error") else "float", name, required=False)
               for name in OUTPUT_COLUMNS]
    return ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema(outputs))


def pip_requirements(fmt: str) -> list[str]:
    """Pinned requirements of the predictor for ``fmt``, as installed here (local tags dropped)."""
    names = list(_COMMON) + list(_BY_FORMAT.get(fmt, _BY_FORMAT["hf"]))
    if "onnxruntime" in names and _version("onnxruntime") is None and _version("onnxruntime-gpu"):
        names[names.index("onnxruntime")] = "onnxruntime-gpu"
    return [f"{name}=={version}" for name in names if (version := _version(name))]


def _version(dist: str) -> str | None:
    try:
        return re.sub(r"\+.*$", "", importlib.metadata.version(dist))
    except importlib.metadata.PackageNotFoundError:
        return None


def stage_code(tmp: Path) -> str:
    """A copy of the finsight package (sources only) to ship as the model's code."""
    import finsight

    target = tmp / "finsight"
    shutil.copytree(Path(finsight.__file__).parent, target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return str(target)


def input_example(texts: Sequence[str]):
    import pandas as pd

    return pd.DataFrame({"text": list(texts)})
