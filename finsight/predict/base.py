"""The Predictor protocol and the tokenize -> length-bucket -> batch -> softmax loop every backend shares.

Backends only say how to run one padded batch (:meth:`EncoderPredictor._forward`); truncation,
bucketing, label reordering and the truncation count live here once, so analyze, serve and the
Triton client apply the same rules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from finsight.labels import LABELS


@runtime_checkable
class Predictor(Protocol):
    """Scores texts: ``predict(texts)`` -> float32 ``(n, 3)`` probabilities in ``LABELS`` order.

    ``encode`` + ``submit`` split the same work in two so a caller can tokenize the next chunk
    (or write the previous one) while a chunk is scored; ``predict(texts)`` equals
    ``submit(encode(texts))()``.
    """

    name: str  # the backend: torch, onnx, torchscript, triton
    source: str  # what it runs: a directory, a hub id or a server URL
    device: str  # "cpu" or "cuda..."
    labels: tuple[str, ...]
    max_length: int

    def predict(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode(self, texts: Sequence[str]) -> "Encoded": ...

    def predict_encoded(self, encoded: "Encoded") -> np.ndarray: ...

    def submit(self, encoded: "Encoded") -> Callable[[], np.ndarray]: ...


@dataclass
class Encoded:
    """Token ids of a list of texts, unpadded; ``lengths`` count special tokens too."""

    ids: list[list[int]]
    lengths: np.ndarray  # int64 (n,)
    truncated: np.ndarray  # bool (n,): the text had more than max_length tokens

    def __len__(self) -> int:
        return len(self.ids)


def cpu_threads(requested: int) -> int:
    """Intra-op threads: the requested count, else the cores this process may use."""
    if requested:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class EncoderPredictor:
    """Base of the tokenizer-driven backends.

    Subclasses set ``input_names`` (what the graph/model takes) and implement ``_forward``;
    they may override ``_finish`` to keep results on a device until the end of a call.
    """

    name = "base"
    device = "cpu"
    labels: tuple[str, ...] = LABELS

    def __init__(self, *, tokenizer: Any, order: np.ndarray, max_length: int, batch_size: int,
                 input_names: Sequence[str], source: str):
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.input_names = tuple(input_names)
        self.source = source
        self._order = np.asarray(order, dtype=np.int64)
        self._pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        # The Rust tokenizer directly: one call encodes a whole list in parallel, off the GIL.
        self._tokenizer = tokenizer.backend_tokenizer.__class__.from_str(tokenizer.backend_tokenizer.to_str())
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)

    # ------------------------------------------------------------ public

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_encoded(self.encode(texts))

    def encode(self, texts: Sequence[str]) -> Encoded:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        ids = [e.ids for e in encodings]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(ids))
        return Encoded(ids=ids, lengths=lengths, truncated=truncated)

    def predict_encoded(self, encoded: Encoded) -> np.ndarray:
        """Probabilities ``(n, 3)`` in canonical order; batches are sorted by length to cut padding."""
        return self.submit(encoded)()

    def submit(self, encoded: Encoded) -> Callable[[], np.ndarray]:
        """Start scoring ``encoded``; the returned function waits and gives the probabilities.

        On a GPU the batches run asynchronously, so a caller can write out the previous
        chunk while this one computes; CPU backends finish before returning.
        """
        if len(encoded) == 0:
            return lambda: np.zeros((0, len(LABELS)), dtype=np.float32)
        order = np.argsort(encoded.lengths, kind="stable")
        outputs = [self._forward(batch) for batch in self._batches(encoded, order)]

        def result() -> np.ndarray:
            probs = self._finish(outputs)
            restored = np.empty_like(probs)
            restored[order] = probs
            return np.ascontiguousarray(restored[:, self._order], dtype=np.float32)

        return result

    # ------------------------------------------------------------ backend hooks

    def _forward(self, batch: dict[str, np.ndarray]) -> Any:
        """Probabilities (or anything ``_finish`` turns into them) of one padded batch."""
        raise NotImplementedError

    def _finish(self, outputs: list[Any]) -> np.ndarray:
        return np.concatenate(outputs).astype(np.float32, copy=False)

    # ------------------------------------------------------------ helpers

    def _batches(self, encoded: Encoded, order: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            lengths = encoded.lengths[idx]
            width = int(lengths.max())
            input_ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)
            for row, i in enumerate(idx):
                input_ids[row, :lengths[row]] = encoded.ids[i]
            batch = {"input_ids": input_ids,
                     "attention_mask": (np.arange(width) < lengths[:, None]).astype(np.int64),
                     "token_type_ids": np.zeros_like(input_ids)}
            yield {k: v for k, v in batch.items() if k in self.input_names}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source} max_length={self.max_length}>"


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float32)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
