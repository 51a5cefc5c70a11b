"""The cleaning recipe a model was trained with, and :func:`clean_text`, the one function that
applies it: prep cleans its rows with it and every inference path (analyze, serve, the
registry's pyfunc, export validation, the Triton tokenizer model) cleans each text with it, so
a model never sees text cleaned differently from what it learned on.

Standard library only: ``finsight triton build`` copies this file byte for byte into the
tokenizer model, whose Python has none of finsight's dependencies.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field, fields
from typing import Any

URL_PATTERN = r"(?:https?://|ftp://|www\.)\S+"
HTML_TAG_PATTERN = r"<[^<>]{1,500}>"
# Zero-width and byte-order marks (and soft hyphens) survive NFKC and would make equal texts
# look different, or an empty text look like one.
INVISIBLE_PATTERN = "[\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]"
_URL = re.compile(URL_PATTERN)
_HTML_TAG = re.compile(HTML_TAG_PATTERN)
_INVISIBLE = re.compile(INVISIBLE_PATTERN)
# Entities that decode to markup ("&lt;b&gt;") or to more entities ("&amp;amp;") are stripped
# again, so cleaning a cleaned text changes nothing; a text nested deeper than this is
# adversarial, not a headline.
_HTML_PASSES = 8
# Keys of a data card's "cleaning" record that describe rather than switch a step.
_DESCRIPTIVE = frozenset({"unicode", "whitespace"})


@dataclass(frozen=True)
class CleaningRecipe:
    """Which cleaning steps run, in this order: invisible characters removed, NFKC, HTML tags
    stripped and entities unescaped, URLs removed, whitespace collapsed and trimmed.

    ``assumed`` is True when no recipe was recorded (a hub id, a model trained before recipes
    were recorded) and this, the default, stands in; it is not part of the recipe itself.
    """

    nfkc: bool = True
    remove_invisible: bool = True
    collapse_whitespace: bool = True
    remove_urls: bool = False
    remove_html: bool = False
    assumed: bool = field(default=False, compare=False)

    def as_dict(self) -> dict[str, bool]:
        """The steps, as ``finsight.json`` records them."""
        return {f.name: bool(getattr(self, f.name)) for f in fields(self) if f.compare}

    @classmethod
    def from_dict(cls, recorded: Any) -> "CleaningRecipe":
        """The recipe a manifest or data card recorded; ValueError names what is wrong.

        A step this version does not know is refused rather than skipped: skipping it would
        clean differently from training, the skew the recipe exists to prevent.
        """
        if not isinstance(recorded, dict):
            raise ValueError(f"expected an object of true/false steps, got {type(recorded).__name__}")
        steps = {f.name for f in fields(cls) if f.compare}
        unknown = sorted(k for k in recorded if k not in steps and k not in _DESCRIPTIVE)
        if unknown:
            raise ValueError(f"unknown cleaning steps {unknown} (written by a newer finsight?)")
        values = {k: v for k, v in recorded.items() if k in steps}
        bad = sorted(k for k, v in values.items() if not isinstance(v, bool))
        if bad:
            raise ValueError(f"cleaning steps {bad} must be true or false")
        return cls(**values)

    @property
    def provenance(self) -> str:
        """``recorded``, or ``default (no recipe recorded)``: what analyze and /v1/model say."""
        return "default (no recipe recorded)" if self.assumed else "recorded"


DEFAULT_RECIPE = CleaningRecipe()


def clean_text(text: str, recipe: CleaningRecipe) -> str:
    """``text`` cleaned as ``recipe`` says. Plain Python, microseconds per headline.

    Cleaning a cleaned text gives it back unchanged, so a text cleaned by the client and again
    by the Triton tokenizer model, or a prepared split scored by evaluate, is not altered twice.
    """
    text = _normalize(text, recipe)
    if recipe.remove_html and ("<" in text or "&" in text):
        text = _strip_html(text, recipe)
    if recipe.remove_urls and ("://" in text or "www." in text):
        text = _URL.sub(" ", text)
    if recipe.collapse_whitespace:
        text = " ".join(text.split())
    return text


def _normalize(text: str, recipe: CleaningRecipe) -> str:
    if text.isascii():  # neither step changes ASCII: skip both (most headlines)
        return text
    if recipe.remove_invisible:
        # Before NFKC: a zero-width joiner between a letter and its accent blocks composition.
        text = _INVISIBLE.sub("", text)
    if recipe.nfkc:
        text = unicodedata.normalize("NFKC", text)
    return text


def _strip_html(text: str, recipe: CleaningRecipe) -> str:
    for _ in range(_HTML_PASSES):
        stripped = _HTML_TAG.sub(" ", text)
        if "&" in stripped:
            # An entity may decode to a zero-width or compatibility character (&#8203;, &nbsp;).
            stripped = _normalize(html.unescape(stripped), recipe)
        if stripped == text:
            break
        text = stripped
    return text
