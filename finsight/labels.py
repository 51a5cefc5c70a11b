"""The canonical label schema: names, order, and remapping of source labels onto it.

Sources disagree on label names (``bullish``, ``neg``, ``-1``) and on the order of integer
codes (Financial PhraseBank on the Hub: 0=negative 1=neutral 2=positive; others differ), so
every label is mapped by name: built-in synonyms, then the user's ``data.label_map``. An
integer code outside the ``-1/0/1`` convention is never guessed from its position.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Mapping, Sequence

from finsight.errors import ConfigError, DataError, ModelError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
LABEL2ID: dict[str, int] = {name: i for i, name in enumerate(LABELS)}

SYNONYMS: dict[str, str] = {
    "negative": "negative", "neg": "negative", "bearish": "negative", "-1": "negative",
    "neutral": "neutral", "neu": "neutral", "0": "neutral",
    "positive": "positive", "pos": "positive", "bullish": "positive", "1": "positive",
}
_SIGNED_CODES = {"-1", "0", "1"}
_INTEGER = re.compile(r"^[+-]?\d+(\.0*)?$")
MISSING = "<missing>"


def label_key(value: object) -> str:
    """How a raw label is compared: stripped, case-folded, ``1.0``/``+1`` written as ``1``."""
    if value is None or (isinstance(value, float) and value != value):
        return MISSING
    text = str(value).strip().casefold()
    if _INTEGER.match(text):
        return str(int(float(text)))
    return text or MISSING


def canonical_name(name: str) -> str | None:
    """The canonical label for one name or synonym (``Bullish`` -> ``positive``), else None."""
    return SYNONYMS.get(label_key(name))


def check_label_map(label_map: Mapping[str, str]) -> dict[str, str]:
    """``data.label_map`` with normalised keys; each target must name a canonical label."""
    checked: dict[str, str] = {}
    for source, target in label_map.items():
        canonical = canonical_name(target)
        if canonical is None or label_key(target) in _SIGNED_CODES:
            raise ConfigError(f"data.label_map: '{source}={target}' maps to an unknown label; "
                              f"targets must be one of {', '.join(LABELS)}")
        checked[label_key(source)] = canonical
    return checked


def build_mapping(values: Sequence[str], label_map: Mapping[str, str]) -> dict[str, str | None]:
    """Map each distinct label key to a canonical name (None: unknown).

    The built-in ``-1/0/1`` codes apply only when every integer code in the data is one of
    them; with codes like ``0/1/2`` none is guessed and all must come from ``label_map``.
    """
    user = check_label_map(label_map)
    integers = {v for v in values if _INTEGER.match(v)}
    signed_ok = integers <= _SIGNED_CODES
    mapping: dict[str, str | None] = {}
    for value in values:
        if value in user:
            mapping[value] = user[value]
        elif value in integers and not signed_ok:
            mapping[value] = None
        else:
            mapping[value] = SYNONYMS.get(value)
    return mapping


def map_labels(labels: "pd.Series", label_map: Mapping[str, str], *, source: str = "input",
               flag: str = "--label-map") -> tuple["pd.Series", dict[str, dict]]:
    """Raw labels -> canonical names, plus ``{raw value: {"label": name, "rows": n}}``.

    Unknown values raise DataError listing each with its row count; nothing is dropped.
    """
    import pandas as pd

    keys = pd.Series(labels.array, index=labels.index, dtype=object).map(label_key)
    counts = keys.value_counts(sort=False)
    mapping = build_mapping(list(counts.index), label_map)
    unknown = {value: int(counts[value]) for value, name in mapping.items() if name is None}
    if unknown:
        raise DataError(_unknown_message(unknown, source, flag))
    used = {value: {"label": mapping[value], "rows": int(counts[value])} for value in sorted(mapping)}
    return keys.map(mapping).astype("str"), used


def to_canonical(labels: "pd.Series", label_map: Mapping[str, str] | None = None,
                 **kwargs: str) -> "pd.Series":
    """Raw labels -> canonical names (see :func:`map_labels`)."""
    return map_labels(labels, label_map or {}, **kwargs)[0]


def map_hint(values: Sequence[str], flag: str) -> str:
    """Options that map ``values`` as typed in a shell: the repeatable ``--label-map SRC=LABEL``,
    or one ``--set data.label_map={...}`` when ``flag`` is a ``--set`` key."""
    import json
    import shlex

    if flag.startswith("--set "):
        pairs = ", ".join(f"{json.dumps(value)}: LABEL" for value in values)
        return f"--set {shlex.quote(flag.split()[1] + '={' + pairs + '}')}"
    return " ".join(f"{flag} {shlex.quote(f'{value}=LABEL')}" for value in values)


def _unknown_message(unknown: dict[str, int], source: str, flag: str) -> str:
    shown = sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"'{value}' ({count} row{'s' * (count != 1)})" for value, count in shown[:20])
    more = f" and {len(shown) - 20} more" if len(shown) > 20 else ""
    named = [value for value, _ in shown if value != MISSING]
    hints = []
    if MISSING in unknown:
        hints.append("fill in or remove the rows with no label")
    if named:
        hints.append(f"map them with {map_hint(named[:3], flag)} (LABEL: {', '.join(LABELS)})")
    return f"{source}: unknown labels {listed}{more}; {'; '.join(hints)}"


def checkpoint_labels(names: Sequence[str]) -> list[str] | None:
    """The canonical label of each of a model's label names (``Bullish`` -> ``positive``), or
    None unless they name negative, neutral and positive once each.

    Bare integer codes never count: ``id2label={0: "0", ...}`` says nothing about meaning.
    """
    mapped = [None if str(n).strip().lstrip("+-").isdigit() else canonical_name(str(n)) for n in names]
    if len(mapped) != len(LABELS) or sorted(m or "" for m in mapped) != sorted(LABELS):
        return None
    return mapped  # type: ignore[return-value]


def canonical_order(names: Sequence[str], *, source: str = "model") -> "np.ndarray":
    """For a model's labels in logit order, the logit index of each canonical label.

    ``canonical_order(["positive", "negative", "neutral"]) == [1, 2, 0]``, so
    ``scores[:, canonical_order(names)]`` puts columns in LABELS order.
    """
    import numpy as np

    mapped = checkpoint_labels(names)
    if mapped is None:
        raise ModelError(
            f"{source}: model labels {list(names)} do not map onto {list(LABELS)}; finsight needs a "
            "3-class model whose config.json id2label (or finsight.json labels) names "
            "negative, neutral and positive")
    return np.array([mapped.index(label) for label in LABELS], dtype=np.int64)
