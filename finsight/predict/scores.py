"""Probabilities -> output fields: the one definition of label, confidence, p_* and sentiment.

Every consumer (``analyze`` files, ``serve`` responses, the registry's pyfunc model, Triton
checks) turns a predictor's ``(n, 3)`` probabilities in ``LABELS`` order into the same fields:

- ``label``: the most probable label; a tie goes to the first of negative, neutral, positive
  (``argmax`` order), so equal probabilities never give different labels in different places;
- ``confidence``: the probability of that label;
- ``p_negative``, ``p_neutral``, ``p_positive``: the probabilities themselves;
- ``sentiment``: ``p_positive - p_negative``, in [-1, 1].

A label is only as clear as its lead over the runner-up (:func:`label_margin`): a model that
cannot tell positive from negative gives p = 0.44/0.12/0.44, and argmax then labels by a
0.01 margin. Summaries count such close calls (margin below :data:`CLOSE_CALL`).

Rows that were not scored (no text) get no label and NaN numbers. This module needs numpy
alone, so the Triton postprocess model runs the same code (``finsight triton build`` ships it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from finsight.labels import LABELS

if TYPE_CHECKING:
    import pandas as pd

PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{label}" for label in LABELS)
SCORE_COLUMNS: tuple[str, ...] = ("label", "confidence", *PROB_COLUMNS, "sentiment")
_POSITIVE, _NEGATIVE = LABELS.index("positive"), LABELS.index("negative")
CLOSE_CALL = 0.1  # a label ahead of the runner-up by less than this is a close call


def _as_probs(probs: Any) -> np.ndarray:
    array = np.asarray(probs, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != len(LABELS):
        raise ValueError(f"probabilities must have shape (n, {len(LABELS)}), got {array.shape}")
    return array


def softmax(logits: Any) -> np.ndarray:
    """Probabilities from logits, per row (float32, numerically stable)."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def label_ids(probs: Any) -> np.ndarray:
    """Index into ``LABELS`` of each row's label (ties: the first in ``LABELS`` order)."""
    return _as_probs(probs).argmax(axis=1)


def label_margin(probs: Any) -> np.ndarray:
    """How far each row's label probability is ahead of the runner-up's, in [0, 1]."""
    top = np.sort(_as_probs(probs), axis=1)
    return top[:, -1] - top[:, -2]


def sentiment(probs: Any) -> np.ndarray:
    """``p_positive - p_negative`` per row."""
    array = _as_probs(probs)
    return array[:, _POSITIVE] - array[:, _NEGATIVE]


def score_columns(probs: Any, valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Column name -> array for :data:`SCORE_COLUMNS`.

    ``probs`` holds one row per valid row; ``valid`` (bool, one per output row) marks which
    output rows they fill. The others get ``label`` None and NaN numbers.
    """
    array = _as_probs(probs)
    valid = np.ones(len(array), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if int(valid.sum()) != len(array):
        raise ValueError(f"{len(array)} probability rows for {int(valid.sum())} valid rows")
    full = np.full((len(valid), len(LABELS)), np.nan, dtype=np.float32)
    full[valid] = array
    labels = np.full(len(valid), None, dtype=object)
    if len(array):
        labels[valid] = np.asarray(LABELS, dtype=object)[label_ids(array)]
    columns: dict[str, np.ndarray] = {"label": labels, "confidence": full.max(axis=1)}
    columns.update({name: full[:, j] for j, name in enumerate(PROB_COLUMNS)})
    columns["sentiment"] = full[:, _POSITIVE] - full[:, _NEGATIVE]
    return columns


def assign_scores(frame: "pd.DataFrame", probs: Any, valid: np.ndarray | None = None) -> "pd.DataFrame":
    """Add (or replace) the :data:`SCORE_COLUMNS` of ``frame`` in place; returns ``frame``."""
    import pandas as pd

    for name, values in score_columns(probs, valid).items():
        frame[name] = pd.array(values, dtype="string") if name == "label" else values
    return frame


def score_frame(probs: Any, valid: np.ndarray | None = None) -> "pd.DataFrame":
    """A new DataFrame with just the :data:`SCORE_COLUMNS`."""
    import pandas as pd

    n = len(valid) if valid is not None else len(np.asarray(probs))
    return assign_scores(pd.DataFrame(index=pd.RangeIndex(n)), probs, valid)


def score_records(probs: Any) -> list[dict[str, Any]]:
    """One JSON-ready dict per row: ``label``, ``confidence``, ``probabilities`` (by label), ``sentiment``."""
    columns = score_columns(probs)
    array = _as_probs(probs)
    return [{"label": str(columns["label"][i]),
             "confidence": float(columns["confidence"][i]),
             "probabilities": {label: float(array[i, j]) for j, label in enumerate(LABELS)},
             "sentiment": float(columns["sentiment"][i])}
            for i in range(len(array))]


def score_record(probs: Any) -> dict[str, Any]:
    """:func:`score_records` for one text's probabilities (shape ``(3,)`` or ``(1, 3)``)."""
    return score_records(np.asarray(probs, dtype=np.float32).reshape(1, -1))[0]
