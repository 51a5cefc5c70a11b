"""Which words drove a label: word-level occlusion on any backend.

Each word (a word of the model's own tokenizer, with all its sub-word pieces) is removed from
the cleaned text in turn; the text and all its variants are scored in one ``predict`` call of
the same predictor, so torch, ONNX (int8 too), TorchScript and Triton explain exactly what they
score, and no gradients are needed. A word's contribution is how much the predicted label's
probability drops without it (positive: the word supports the label) and how much
``sentiment`` (p_positive - p_negative) drops without it.

Long texts are explained sentence by sentence with the document mode's splitter
(:func:`finsight.predict.document.document_sentences`); the document's label is the
token-length-weighted mean of its sentences' probabilities, so a word's contribution to the
document is its contribution to its sentence scaled by that sentence's weight.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np

from finsight.data.recipe import clean_text
from finsight.labels import LABELS
from finsight.predict.base import Predictor
from finsight.predict.document import DocumentBatch, aggregate, document_sentences
from finsight.predict.scores import label_ids, sentiment

if TYPE_CHECKING:
    from finsight.config import Settings

METHODS = ("occlusion",)
Mode = Literal["auto", "sentence", "document"]
# Words for a predictor without a tokenizer of its own (a test double): what BERT's
# pre-tokenizer calls words, runs of word characters and single punctuation marks.
_FALLBACK_WORD = re.compile(r"\w+|[^\w\s]")


@dataclass
class WordContribution:
    word: str
    start: int  # character span in the explained (cleaned) sentence
    end: int
    contribution: float  # p(label | text) - p(label | text without the word)
    sentiment: float  # sentiment(text) - sentiment(text without the word)

    def as_dict(self) -> dict[str, Any]:
        return {"word": self.word, "start": self.start, "end": self.end,
                "contribution": round(self.contribution, 6), "sentiment": round(self.sentiment, 6)}


@dataclass
class Explanation:
    """One text's (or sentence's) label and the contribution of each of its words."""

    text: str  # cleaned, as the model scored it (a document: its sentences, one per line)
    label: str
    confidence: float
    sentiment: float
    words: list[WordContribution]
    sentences: list["Explanation"] | None = field(default=None)  # a document's, else None

    def top_words(self, k: int) -> list[WordContribution]:
        """The ``k`` words with the largest absolute contribution, strongest first."""
        return sorted(self.words, key=lambda w: -abs(w.contribution))[:k]

    def as_dict(self) -> dict[str, Any]:
        data = {"text": self.text, "label": self.label, "confidence": round(self.confidence, 6),
                "sentiment": round(self.sentiment, 6), "words": [w.as_dict() for w in self.words]}
        if self.sentences is not None:
            data["sentences"] = [s.as_dict() for s in self.sentences]
        return data


def explain_texts(predictor: Predictor, texts: Sequence[str], *, mode: Mode = "auto") -> list[Explanation]:
    """An :class:`Explanation` per text (each must have text: see ``data.clean.text_error``).

    ``mode``: ``sentence`` explains each text as one input (truncated as the model truncates
    it), ``document`` sentence by sentence, ``auto`` sentence by sentence only the texts longer
    than the model's ``max_length``. Every sentence variant of every text goes to the predictor
    in one call.
    """
    single = _single(predictor, texts, mode)
    units = [[clean_text(text, predictor.cleaning)] if one else document_sentences(text, predictor.cleaning)
             for text, one in zip(texts, single)]
    explained = _occlude(predictor, [sentence for sentences in units for sentence in sentences])
    results, start = [], 0
    for one, sentences in zip(single, units):
        part = explained[start:start + len(sentences)]
        start += len(sentences)
        results.append(part[0].explain() if one else _document(predictor, part))
    return results


def _single(predictor: Predictor, texts: Sequence[str], mode: Mode) -> list[bool]:
    """Which texts are explained whole (the rest sentence by sentence)."""
    if mode == "auto":
        return [not truncated for truncated in predictor.encode(texts).truncated.tolist()]
    return [mode == "sentence"] * len(texts)


@dataclass
class _Scored:
    """One sentence, its words, and its probabilities with and without each word."""

    text: str
    words: list[tuple[int, int]]
    base: np.ndarray  # (3,)
    removed: np.ndarray  # (n_words, 3)

    def explain(self, label: int | None = None, scale: float = 1.0) -> Explanation:
        """Contributions to ``label`` (default: this sentence's own), times ``scale``."""
        label = int(label_ids(self.base[None])[0]) if label is None else label
        base_sentiment = float(sentiment(self.base[None])[0])
        drops = (self.base[label] - self.removed[:, label]) * scale
        moves = (base_sentiment - sentiment(self.removed)) * scale
        words = [WordContribution(self.text[a:b], a, b, float(d), float(m))
                 for (a, b), d, m in zip(self.words, drops, moves)]
        return Explanation(text=self.text, label=LABELS[label], confidence=float(self.base[label]),
                           sentiment=base_sentiment, words=words)


def _occlude(predictor: Predictor, sentences: list[str]) -> list[_Scored]:
    """Every sentence and every one-word-removed variant, scored in one predict call."""
    spans = word_spans(predictor, sentences)
    variants: list[str] = []
    for sentence, words in zip(sentences, spans):
        variants.append(sentence)
        variants.extend(_without(sentence, start, end) for start, end in words)
    probs = predictor.predict(variants) if variants else np.zeros((0, len(LABELS)), dtype=np.float32)
    out, row = [], 0
    for sentence, words in zip(sentences, spans):
        out.append(_Scored(sentence, words, probs[row], probs[row + 1:row + 1 + len(words)]))
        row += 1 + len(words)
    return out


def _document(predictor: Predictor, part: list[_Scored]) -> Explanation:
    """A document from its sentences: the weighted-mean label (as ``analyze --mode document``),
    and each word's contribution to it: the drop of the document label's probability in its
    sentence, times the sentence's weight share (the document is that weighted mean)."""
    sentences = [scored.text for scored in part]
    encoded = predictor.encode(sentences)
    batch = DocumentBatch(sentences=sentences, n_sentences=np.array([len(sentences)]),
                          sentence_doc=np.zeros(len(sentences), dtype=np.int64), encoded=encoded)
    doc_probs = aggregate(batch, np.stack([scored.base for scored in part]))[0]
    label = int(label_ids(doc_probs[None])[0])
    weights = np.maximum(encoded.lengths - 2, 1).astype(np.float64)
    words = [word for scored, weight in zip(part, weights)
             for word in scored.explain(label, float(weight / weights.sum())).words]
    return Explanation(text="\n".join(sentences), label=LABELS[label], confidence=float(doc_probs[label]),
                       sentiment=float(sentiment(doc_probs[None])[0]), words=words,
                       sentences=[scored.explain() for scored in part])


def explain_text(text: str, settings: Settings, *, predictor: Predictor | None = None,
                 mode: Mode = "auto") -> Explanation:
    """One text's explanation (``finsight explain "TEXT"``); no text is a :class:`DataError`."""
    from finsight.data.clean import text_error
    from finsight.errors import DataError

    error = text_error(text)
    if error is not None:
        raise DataError(f"{error}: pass the text to explain (or a file of texts)")
    if predictor is None:
        from finsight.predict.loader import load_predictor

        predictor = load_predictor(None, settings)
    return explain_texts(predictor, [text], mode=mode)[0]


def top_words_json(predictor: Predictor, texts: Sequence[str], errors: Sequence[str | None], *, k: int,
                   mode: Mode) -> list[str | None]:
    """Per row, a JSON list of its ``k`` strongest ``{word, contribution, sentiment}`` (None
    where ``errors`` has a reason): the ``top_words`` column of ``analyze --explain K``."""
    valid = [text for text, error in zip(texts, errors) if error is None]
    explained = iter(explain_texts(predictor, valid, mode=mode))
    return [None if error is not None else
            json.dumps([w.as_dict() for w in next(explained).top_words(k)], ensure_ascii=False)
            for error in errors]


def _without(text: str, start: int, end: int) -> str:
    return " ".join((text[:start] + " " + text[end:]).split())


def word_spans(predictor: Predictor, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
    """The words of each (cleaned) text as the predictor's tokenizer splits it."""
    encoder = getattr(predictor, "encoder", None)
    if encoder is not None and hasattr(encoder, "word_spans"):
        return encoder.word_spans(texts)
    return [[m.span() for m in _FALLBACK_WORD.finditer(text)] for text in texts]
