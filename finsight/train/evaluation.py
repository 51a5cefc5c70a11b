"""`finsight evaluate`: score any model or export dir on labeled data, one code path for all.

Predictions come from :func:`finsight.predict.load_predictor`, so a torch model dir, an
ONNX export and a TorchScript export are measured by the same tokenization, truncation
and label mapping on identical rows: their numbers can be compared directly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from finsight.errors import DataError
from finsight.labels import LABEL2ID, LABELS
from finsight.paths import default_path, safe_name
from finsight.results import EvalResult
from finsight.quiet import quiet
from finsight.train.noise import QUIET_LOGGERS, QUIET_WARNINGS

if TYPE_CHECKING:
    import pandas as pd

    from finsight.config import DataSettings, Settings



def evaluate(model_ref: str | Path, settings: Settings, *, data: str | Path | None = None,
             split: str = "test", backend: str | None = None, out: str | Path | None = None,
             verbose: bool = False) -> EvalResult:
    """Accuracy, macro-F1, per-class P/R/F1, confusion matrix and mean loss of ``model_ref``.

    ``data`` is a `prep` output dir (its ``<split>.parquet`` is used) or any labeled file
    finsight can read; None uses the prep dir recorded in the model's manifest.
    Writes ``metrics.json`` and ``confusion_matrix.png`` into ``out``.
    """
    import numpy as np

    from finsight.io import check_writable
    from finsight.predict import load_predictor
    from finsight.metrics import classification_report, mean_log_loss

    if out is not None:
        check_writable(out)
    frame, source = labeled_rows(data if data is not None else recorded_data_dir(model_ref),
                                 settings.data, split=split)
    with quiet(*QUIET_LOGGERS, warnings_matching=QUIET_WARNINGS, progress_bars=True,
               enabled=not verbose):
        predictor = load_predictor(str(model_ref), settings, backend=backend)
        started = time.perf_counter()
        probs = np.asarray(predictor.predict(frame["text"].tolist()), dtype=np.float32)
        seconds = time.perf_counter() - started
    y_true = frame["label"].map(LABEL2ID).to_numpy()
    y_pred = probs.argmax(axis=1)
    metrics = {
        "model": str(model_ref), "backend": predictor.name, "data": source, "split": split,
        **classification_report(y_true, y_pred, LABELS),
        "loss": mean_log_loss(probs, y_true),
        "seconds": round(seconds, 3), "texts_per_s": round(len(frame) / seconds, 1) if seconds else None,
    }
    out_dir = Path(out) if out else default_path(settings.workdir, "eval", f"{model_name(model_ref)}-{split}")
    metrics["out"] = str(out_dir.resolve())
    _write(out_dir, metrics)
    return EvalResult.from_metrics(metrics)


def model_name(ref: str | Path) -> str:
    """A short name for output dirs: the run name for ``<run>/model`` and ``<run>/export-*``."""
    path = Path(ref)
    if path.exists():
        path = path.resolve()
        name = path.name
        if name == "model" or name.startswith("export"):
            name = f"{path.parent.name}-{name}" if name != "model" else path.parent.name
    else:
        name = str(ref)
    return safe_name(name)


def recorded_data_dir(model_ref: str | Path) -> Path:
    """The prep dir a model was trained on (from its manifest, or its source model's)."""
    from finsight.artifacts import read_manifest

    path = Path(model_ref)
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest and manifest.get("kind") == "export" and manifest.get("source_model"):
        manifest = read_manifest(manifest["source_model"]) if Path(manifest["source_model"]).is_dir() else None
    data_dir = (manifest or {}).get("data_dir")
    if not data_dir:
        raise DataError(f"no evaluation data: {model_ref} does not record the data it was trained on; "
                        "pass --data DIR (a `finsight prep` output) or a labeled file")
    return Path(data_dir)


def labeled_rows(data: str | Path, data_settings: DataSettings, *, split: str) -> tuple["pd.DataFrame", str]:
    """Rows with columns text and label (canonical names), and a description of their source."""
    from finsight.train.data import read_split

    path = Path(data)
    if path.is_dir() and not _is_hf_dataset(path):
        split_file = path / f"{split}.parquet"
        if not split_file.is_file():
            have = sorted(p.stem for p in path.glob("*.parquet")) or ["none"]
            raise DataError(f"data dir {path} has no {split} split ({split}.parquet); it has splits: "
                            f"{', '.join(have)}; pass --split NAME or another --data")
        return read_split(split_file), str(split_file.resolve())
    if not path.exists():
        raise DataError(f"evaluation data {path} not found; pass --data with a `finsight prep` dir "
                        "or a labeled file")
    return _read_labeled_file(path, data_settings), str(path.resolve())


def _is_hf_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()


def _read_labeled_file(path: Path, data_settings: DataSettings) -> "pd.DataFrame":
    import pandas as pd

    from finsight.data.load import read_labeled

    rows = read_labeled(path, data_settings, require_labels=True)
    return pd.DataFrame({"text": rows.texts, "label": rows.labels})


def _write(out_dir: Path, metrics: dict) -> None:
    from finsight.io import atomic_dir, atomic_write_json

    with atomic_dir(out_dir) as tmp:
        atomic_write_json(tmp / "metrics.json", metrics)
        plot_confusion(metrics, tmp / "confusion_matrix.png")


def plot_confusion(metrics: dict, path: Path) -> None:
    """Counts and row percentages (recall per true class) as a heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = metrics["confusion_matrix"]["labels"]
    matrix = np.asarray(metrics["confusion_matrix"]["matrix"], dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=120)
    try:
        image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{int(matrix[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                        color="white" if share[i, j] > 0.5 else "black", fontsize=9)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{metrics['split']} ({metrics['n']} rows, {metrics['backend']}): accuracy "
                     f"{metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
