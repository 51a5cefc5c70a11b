"""A rule-based sentence splitter for financial text; needs no downloaded data (no NLTK punkt).

A boundary is ``.``, ``!`` or ``?`` (plus closing quotes/brackets), whitespace, then an
upper-case letter, digit or opening quote. A period is not a boundary after a title or
a short form that always continues (``Mr.``, ``e.g.``, ``approx.``, ``No. 5``), after a single
initial (``J. Smith``), or inside a number (``3.5%``, ``EUR 1.2 million``). After a
company suffix or an acronym (``Inc.``, ``Corp.``, ``U.S.``) it is a boundary only when a
usual sentence opener follows (``... in the U.S. The company ...``). Blank lines always split.
"""

from __future__ import annotations

import re

# Short forms that a sentence does not end with.
_CONTINUES = frozenset("""
mr mrs ms dr prof st jr sr messrs mssrs rev hon gen col capt lt sgt gov sen rep pres
vs v e.g i.e cf approx appr est ca c no nos nr fig figs art sec ch vol pp p para dept div
jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
ave blvd rd mt ft oz lb lbs mln bn tn yr yrs mo mos ref incl excl resp avg
""".split())

# Short forms that often end a sentence too: a boundary only before a usual sentence opener.
_MAY_END = frozenset("""
inc corp co ltd llc plc ag sa nv bv gmbh se spa lp llp kgaa ab asa oyj bhd pty etc al
""".split())

_OPENERS = frozenset("""
the a an it its this that these those there their they we our he she his her i in on at
for as but however meanwhile also and so yet after before while when since during despite
although though if revenue sales net shares management analysts investors
""".split())

_BOUNDARY = re.compile(r"([.!?]+)([\"'\u201d\u2019)\]]*)(\s+)(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
_BLANK_LINE = re.compile(r"\n\s*\n")
_LAST_WORD = re.compile(r"(\S+)$")
_ACRONYM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
_INITIAL = re.compile(r"[A-Z]")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped; a text without a boundary is one sentence."""
    sentences: list[str] = []
    for paragraph in _BLANK_LINE.split(text):
        sentences.extend(_split_paragraph(paragraph))
    return sentences


def _split_paragraph(text: str) -> list[str]:
    pieces, start = [], 0
    for match in _BOUNDARY.finditer(text):
        if _is_boundary(text, match):
            pieces.append(text[start:match.end(2)])
            start = match.end()
    pieces.append(text[start:])
    return [" ".join(p.split()) for p in pieces if p.strip()]


def _is_boundary(text: str, match: re.Match) -> bool:
    if match.group(1) != ".":
        return True  # "!", "?", "..." end a sentence
    before = _LAST_WORD.search(text, 0, match.start())
    word = before.group(1).lstrip("\"'(\u201c\u2018[") if before else ""
    key = word.lower()
    if key in _CONTINUES or _INITIAL.fullmatch(word):
        return False
    if key in _MAY_END or _ACRONYM.fullmatch(word):
        following = text[match.end():match.end() + 40].split(maxsplit=1)
        opener = following[0].strip("\"'(\u201c\u2018[,").lower() if following else ""
        return opener in _OPENERS
    return True
