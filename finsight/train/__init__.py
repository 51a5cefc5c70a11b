"""Fine-tuning (Lightning) and evaluation.

``fit(data_dir, settings)`` trains and writes a run dir; ``evaluate(model, settings, data=...)``
scores any model or export dir on labeled data. Imports are lazy so that importing
``finsight.train.tiny`` (tests, demo) does not pull in Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate", "fit"]

def __getattr__(name: str) -> Any:
    if name == "fit":
        from finsight.train.runner import fit

        return fit
    if name == "evaluate":
        from finsight.train.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'finsight.train' has no attribute {name!r}")
