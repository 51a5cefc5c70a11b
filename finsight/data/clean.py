"""Prep's cleaning (the recipe's function on a column), the one rule for unusable texts, and the
key duplicate detection compares."""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Any, Iterable

from finsight.data.recipe import INVISIBLE_PATTERN, CleaningRecipe, clean_text

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from finsight.config import DataSettings

_INVISIBLE_RE = re.compile(INVISIBLE_PATTERN)
# What spreadsheets and dataframe exports write for a missing value: a text that is only one
# of these (any case) is missing, not a headline.
NULL_MARKERS = frozenset({"nan", "na", "n/a", "#n/a", "null", "none", "<na>"})
MISSING, EMPTY = "missing text", "empty text"


def text_error(value: Any) -> str | None:
    """The one rule for a text that cannot be scored (prep drops it, analyze, serve and the
    registry's pyfunc flag it): None (usable), ``"missing text"`` (null, or only a null marker
    such as NaN, NA, null, None) or ``"empty text"`` (nothing left after NFKC and removing
    zero-width characters and whitespace).

    A plain function, not pandas: it costs microseconds on one request's text.
    """
    if _is_null(value):
        return MISSING
    base = _INVISIBLE_RE.sub("", unicodedata.normalize("NFKC", str(value))).strip()
    if not base:
        return EMPTY
    return MISSING if base.casefold() in NULL_MARKERS else None


def text_errors(texts: Iterable[Any]) -> "np.ndarray":
    """:func:`text_error` of every text (object array: None or the reason)."""
    import numpy as np

    values = list(texts)
    errors = np.full(len(values), None, dtype=object)
    errors[:] = [text_error(value) for value in values]
    return errors


def texts_to_score(values: Iterable[Any]) -> tuple[list[str], "np.ndarray"]:
    """The texts as given (document mode needs their line breaks; a null becomes '') and
    :func:`text_errors`: what analyze, serve and the pyfunc hand the predictor, which cleans
    them with the model's recipe (:func:`~finsight.data.recipe.clean_text`), and which rows
    they flag."""
    values = list(values)
    texts = ["" if _is_null(value) else value if isinstance(value, str) else str(value) for value in values]
    return texts, text_errors(values)


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return False
    try:
        return bool(value != value)  # NaN, NaT
    except (TypeError, ValueError):
        return type(value).__name__ == "NAType"  # pandas.NA: its comparisons are NA too


def recipe_for(data: "DataSettings") -> CleaningRecipe:
    """The recipe prep cleans with: NFKC, invisible characters removed, whitespace collapsed,
    and the optional ``data.remove_urls`` / ``data.remove_html``."""
    return CleaningRecipe(remove_urls=data.remove_urls, remove_html=data.remove_html)


def clean_texts(texts: "pd.Series", recipe: CleaningRecipe) -> "pd.Series":
    """:func:`~finsight.data.recipe.clean_text` on every text; missing texts become ''.

    The same per-text function inference runs, mapped, rather than a vectorised copy of it:
    pandas' string methods loop in Python on object columns too, and two versions of one rule
    would drift apart.
    """
    import pandas as pd

    text = pd.Series(texts.array, index=texts.index, dtype=object)
    text = text.where(text.notna(), "").astype(str)
    return text.map(lambda value: clean_text(value, recipe)).astype(object)


def normalized_key(texts: "pd.Series") -> "pd.Series":
    """Case-, space- and punctuation-insensitive form of each (cleaned) text.

    A text made only of punctuation keeps its case-folded self as key, so '!!!' and '???'
    are not merged.
    """
    folded = texts.str.casefold()
    key = folded.str.replace(r"[\W_]+", "", regex=True)
    return key.where(key != "", folded)
