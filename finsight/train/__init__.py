"""Fine-tuning (Lightning) and evaluation.

``fit(data_dir, settings)`` trains and writes a run dir; ``evaluate(model, settings, data=...)``
scores any model or export dir on labeled data. Imports are lazy so that importing
``finsight.train.tiny`` (tests, demo) does not pull in Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate", "fit"]

# What training and evaluation keep off the terminal unless -v: Lightning's and transformers'
# loggers and the warnings below, each harmless for a finsight run (finsight.quiet silences them).
QUIET_LOGGERS = ("lightning.pytorch", "lightning.fabric", "transformers")
QUIET_WARNINGS = (
    r".*does not have many workers.*", r".*Checkpoint directory .* exists and is not empty.*",
    r".*smaller than the logging interval.*", r".*`training_step` returned `None`.*",
    r".*Trying to infer the `batch_size`.*", r".*is an invalid `ckpt_path`.*",
    r".*Found keys that are in the model state dict but not in the checkpoint.*",
    r".*LeafSpec.*", r".*module\(s\) in eval mode.*",
    r".*when logging on epoch level in distributed setting.*",  # epoch metrics are gathered first
    r".*all_gather is deprecated.*",
)


def __getattr__(name: str) -> Any:
    if name == "fit":
        from finsight.train.runner import fit

        return fit
    if name == "evaluate":
        from finsight.train.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'finsight.train' has no attribute {name!r}")
