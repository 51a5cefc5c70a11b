"""Keep Lightning's, transformers' and mlflow's chatter off the terminal (unless -v)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator

_QUIET_WARNINGS = (
    r".*does not have many workers.*", r".*Checkpoint directory .* exists and is not empty.*",
    r".*smaller than the logging interval.*", r".*`training_step` returned `None`.*",
    r".*Trying to infer the `batch_size`.*", r".*is an invalid `ckpt_path`.*",
    r".*Found keys that are in the model state dict but not in the checkpoint.*",
    r".*LeafSpec.*", r".*module\(s\) in eval mode.*",
    r".*when logging on epoch level in distributed setting.*",  # epoch metrics are gathered first
    r".*all_gather is deprecated.*",
)


@contextlib.contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """Keep Lightning's and transformers' chatter off the terminal unless -v."""
    from transformers.utils import logging as hf_logging

    names = ("lightning.pytorch", "lightning.fabric", "transformers")
    levels = {name: logging.getLogger(name).level for name in names}
    bars = hf_logging.is_progress_bar_enabled()
    with warnings.catch_warnings():
        if not verbose:
            for pattern in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            for name in names:
                logging.getLogger(name).setLevel(logging.ERROR)
            hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            if bars:
                hf_logging.enable_progress_bar()
