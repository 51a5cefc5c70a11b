"""Long texts: split into sentences, score them in batches, aggregate per document.

A document's probabilities are the token-length-weighted mean of its sentences'
probabilities, so a long sentence counts more than a two-word fragment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from finsight.data.recipe import CleaningRecipe, clean_text
from finsight.predict.base import Encoded, Predictor
from finsight.predict.sentences import split_sentences


@dataclass
class DocumentBatch:
    """Documents split into sentences and tokenized, ready for ``predict_encoded``."""

    sentences: list[str]  # every sentence, documents in order
    n_sentences: np.ndarray  # (n_docs,) int64
    sentence_doc: np.ndarray  # (n_sentences,) index of each sentence's document
    encoded: Encoded

    @property
    def truncated(self) -> int:
        """Sentences longer than max_length (truncated before scoring)."""
        return int(self.encoded.truncated.sum())


def split_documents(predictor: Predictor, texts: Sequence[str]) -> DocumentBatch:
    """Each document cleaned line by line, then split: collapsing whitespace over the whole
    text would erase the blank lines the splitter splits on, and stripping tags first lets
    ``<p>One.</p><p>Two.</p>`` split. The sentences are then clean (encode cleaning them again
    changes nothing), and a line that cleans to nothing (a bare URL) is no sentence."""
    split = [document_sentences(text, predictor.cleaning) for text in texts]
    counts = np.fromiter((len(s) for s in split), dtype=np.int64, count=len(split))
    sentences = [sentence for parts in split for sentence in parts]
    return DocumentBatch(sentences=sentences, n_sentences=counts,
                         sentence_doc=np.repeat(np.arange(len(split)), counts),
                         encoded=predictor.encode(sentences))


def document_sentences(text: str, recipe: CleaningRecipe) -> list[str]:
    """The cleaned sentences of one document, as :func:`split_documents` scores them."""
    cleaned = clean_lines(text, recipe)
    return split_sentences(cleaned) or [cleaned]


def clean_lines(text: str, recipe: CleaningRecipe) -> str:
    """``text`` with each line cleaned by ``recipe`` and the line breaks kept."""
    return "\n".join(clean_text(line, recipe) for line in text.splitlines())


def aggregate(batch: DocumentBatch, sentence_probs: np.ndarray) -> np.ndarray:
    """Per-document probabilities ``(n_docs, 3)``: token-length-weighted mean over sentences."""
    n_docs = len(batch.n_sentences)
    # Special tokens ([CLS], [SEP]) carry no content: weight by the rest, at least 1.
    weights = np.maximum(batch.encoded.lengths - 2, 1).astype(np.float64)
    totals = np.zeros((n_docs, sentence_probs.shape[1]))
    np.add.at(totals, batch.sentence_doc, sentence_probs * weights[:, None])
    norm = np.bincount(batch.sentence_doc, weights=weights, minlength=n_docs)
    return (totals / np.maximum(norm, 1e-12)[:, None]).astype(np.float32)


@dataclass
class DocumentScores:
    probs: np.ndarray  # (n_docs, 3): what scores.py turns into a document's columns
    batch: DocumentBatch
    sentence_probs: np.ndarray  # (n_sentences, 3)


def score_documents(predictor: Predictor, texts: Sequence[str]) -> DocumentScores:
    """Split, score every sentence in one length-bucketed pass, aggregate per document.

    ``analyze --mode document`` runs the same two halves (:func:`split_documents` while the
    previous chunk scores, then :func:`aggregate`), so both give the same numbers.
    """
    batch = split_documents(predictor, texts)
    sentence_probs = predictor.predict_encoded(batch.encoded)
    return DocumentScores(aggregate(batch, sentence_probs), batch, sentence_probs)
