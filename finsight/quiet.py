"""The one way finsight keeps other libraries' chatter off the terminal for the length of a call.

Exporters print on stdout (which ``--json`` owns), mlflow and Lightning log hints and warnings on
every call, transformers draws progress bars on stderr next to finsight's own. Every silencer
in the package is this context manager with other arguments; ``-v`` callers pass ``enabled=False``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Iterator, Sequence


@contextlib.contextmanager
def quiet(
    *loggers: str,
    level: int = logging.ERROR,
    warnings_matching: Sequence[str] = (),
    warnings_from: str | None = None,
    all_warnings: bool = False,
    stdout: bool = False,
    progress_bars: bool = False,
    enabled: bool = True,
) -> Iterator[None]:
    """Raise ``loggers`` to ``level`` and drop the chosen warnings until the block ends.

    ``warnings_matching``: message regexes to drop; ``warnings_from``: a module regex whose
    warnings are dropped; ``all_warnings``: drop every warning. ``stdout`` swallows prints,
    ``progress_bars`` turns off transformers' bars. Levels and bars are put back after.
    """
    if not enabled:
        yield
        return
    saved = {name: logging.getLogger(name).level for name in loggers}
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        if all_warnings:
            warnings.simplefilter("ignore")
        for pattern in warnings_matching:
            warnings.filterwarnings("ignore", message=pattern)
        if warnings_from is not None:
            warnings.filterwarnings("ignore", module=warnings_from)
        if stdout:
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        if progress_bars:
            stack.enter_context(_no_progress_bars())
        for name in loggers:
            logging.getLogger(name).setLevel(level)
        try:
            yield
        finally:
            for name, previous in saved.items():
                logging.getLogger(name).setLevel(previous)


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
