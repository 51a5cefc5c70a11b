"""Classification metrics in plain numpy: one definition for train, evaluate and export.

Every function takes integer class indices (``y_true``, ``y_pred``) in ``[0, n_classes)``.
A class with no true and no predicted rows has F1 0 and still counts in the macro average,
so a model that never predicts a class is not flattered.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``m[i, j]`` = rows of true class i predicted as class j."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def accuracy(y_true, y_pred) -> float:
    y_true = np.asarray(y_true)
    return float((y_true == np.asarray(y_pred)).mean()) if len(y_true) else 0.0


def precision_recall_f1(y_true, y_pred, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 (0 where undefined)."""
    matrix = confusion_matrix(y_true, y_pred, n_classes).astype(np.float64)
    hits = np.diag(matrix)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return precision, recall, f1


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    return float(precision_recall_f1(y_true, y_pred, n_classes)[2].mean())


def classification_report(y_true, y_pred, labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1/support and the confusion matrix, JSON-ready."""
    n = len(labels)
    precision, recall, f1 = precision_recall_f1(y_true, y_pred, n)
    matrix = confusion_matrix(y_true, y_pred, n)
    return {
        "n": int(len(np.asarray(y_true))),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": float(f1.mean()),
        "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]),
                              "f1": float(f1[i]), "support": int(matrix[i].sum())}
                      for i, label in enumerate(labels)},
        "confusion_matrix": {"labels": list(labels), "matrix": matrix.tolist()},
    }


def mean_log_loss(probs, y_true, eps: float = 1e-12) -> float:
    """Mean negative log-probability of the true class."""
    probs = np.asarray(probs, dtype=np.float64)
    picked = probs[np.arange(len(probs)), np.asarray(y_true, dtype=np.int64)]
    return float(-np.log(np.clip(picked, eps, 1.0)).mean()) if len(picked) else 0.0
