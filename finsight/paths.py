"""Where commands write when not told: one layout under ``workdir``.

``<workdir>/data/<input>``       prep splits + data card
``<workdir>/runs/<run>``         train runs (model/, metrics.json, checkpoints/)
``<workdir>/eval/<model>-<split>`` evaluate metrics + confusion matrix
``<workdir>/exports/<name>``     exports of hub models (a local model's go beside it)
``<workdir>/analyze/<file>``     analyze outputs
``<workdir>/mlflow.db``          the default MLflow tracking store
"""

from __future__ import annotations

import re
from pathlib import Path

LAYOUT = {"data": "data", "run": "runs", "eval": "eval", "export": "exports", "analyze": "analyze"}


def default_path(workdir: str | Path, kind: str, name: str) -> Path:
    """``<workdir>/<kind's folder>/<name>``."""
    return Path(workdir) / LAYOUT[kind] / name


def mlflow_db(workdir: str | Path) -> Path:
    return (Path(workdir) / "mlflow.db").resolve()


def safe_name(text: str, fallback: str = "model") -> str:
    """``text`` as one path component: runs of other characters become ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or fallback
