"""Text cleaning, the one rule for unusable texts, and the key duplicate detection compares."""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from finsight.config import DataSettings

_URL = r"(?:https?://|ftp://|www\.)\S+"
_HTML_TAG = r"<[^<>]{1,500}>"
# Zero-width and byte-order marks (and soft hyphens) survive NFKC and would make equal texts
# look different, or an empty text look like one.
_INVISIBLE = "[\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]"
_INVISIBLE_RE = re.compile(_INVISIBLE)
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
    :func:`text_errors`: what analyze, serve and the pyfunc score, and which rows they flag."""
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


def clean_texts(texts: "pd.Series", data: "DataSettings") -> "pd.Series":
    """NFKC, optional HTML/URL removal, whitespace collapsed; missing texts become ''."""
    import pandas as pd

    text = pd.Series(texts.array, index=texts.index, dtype=object)
    text = text.where(text.notna(), "").astype(str)
    if data.remove_html:
        text = _strip_html(text)
    text = text.str.normalize("NFKC").str.replace(_INVISIBLE, "", regex=True)
    if data.remove_urls:
        text = text.str.replace(_URL, " ", regex=True)
    return text.str.replace(r"\s+", " ", regex=True).str.strip()


def _strip_html(text: "pd.Series") -> "pd.Series":
    import html

    text = text.str.replace(_HTML_TAG, " ", regex=True)
    has_entity = text.str.contains("&", regex=False)
    if has_entity.any():
        text = text.copy()
        text[has_entity] = text[has_entity].map(html.unescape)
    return text


def normalized_key(texts: "pd.Series") -> "pd.Series":
    """Case-, space- and punctuation-insensitive form of each (cleaned) text.

    A text made only of punctuation keeps its case-folded self as key, so '!!!' and '???'
    are not merged.
    """
    folded = texts.str.casefold()
    key = folded.str.replace(r"[\W_]+", "", regex=True)
    return key.where(key != "", folded)
