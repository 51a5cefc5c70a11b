"""The data card: what went in, what came out, what was removed and why."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from finsight.errors import DataError
from finsight.labels import LABELS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from finsight.config import DataSettings


def label_counts(labels: "pd.Series") -> dict[str, int]:
    counts = labels.value_counts()
    return {label: int(counts.get(label, 0)) for label in LABELS}


def split_summary(frame: "pd.DataFrame", splits: Sequence[str]) -> dict[str, dict[str, Any]]:
    summary = {}
    for name in splits:
        labels = frame.loc[frame["_split"] == name, "label"]
        counts = label_counts(labels)
        total = max(len(labels), 1)
        summary[name] = {"file": f"{name}.parquet", "rows": int(len(labels)), "labels": counts,
                         "share": {k: round(v / total, 4) for k, v in counts.items()}}
    return summary


def length_stats(lengths: "np.ndarray") -> dict[str, float | int | None]:
    import numpy as np

    if len(lengths) == 0:
        return {"min": None, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(lengths, [50, 95, 99])
    return {"min": int(lengths.min()), "mean": round(float(lengths.mean()), 2), "p50": float(p50),
            "p95": float(p95), "p99": float(p99), "max": int(lengths.max())}


def text_lengths(texts: "pd.Series", data: "DataSettings", *,
                 max_length: int | None = None) -> dict[str, Any]:
    """Character stats always; token stats when ``data.tokenizer`` names a tokenizer."""
    stats: dict[str, Any] = {"chars": length_stats(texts.str.len().to_numpy()),
                             "tokens": None, "tokenizer": data.tokenizer}
    if data.tokenizer:
        tokens = _token_lengths(texts.tolist(), data.tokenizer)
        stats["tokens"] = length_stats(tokens)
        if max_length:
            over = int((tokens > max_length).sum())
            stats["over_max_length"] = {"max_length": max_length, "rows": over,
                                        "share": round(over / max(len(tokens), 1), 4)}
    return stats


def _token_lengths(texts: list[str], tokenizer: str) -> "np.ndarray":
    import numpy as np
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer)
    except (OSError, ValueError) as exc:
        raise DataError(f"data.tokenizer '{tokenizer}' cannot be loaded ({type(exc).__name__}); "
                        "pass a local tokenizer or model dir, or unset data.tokenizer") from None
    if not texts:
        return np.zeros(0, dtype=np.int64)
    ids = tok(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
