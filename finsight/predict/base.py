"""The Predictor protocol and the length-bucket -> batch -> softmax loop every backend shares.

Backends only say how to run one padded batch (:meth:`EncoderPredictor._forward`); truncation,
bucketing, label reordering and the truncation count live here once, so analyze, serve and the
Triton client apply the same rules.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from finsight.data.recipe import CleaningRecipe, clean_text
from finsight.errors import BackendError
from finsight.labels import LABELS
from finsight.model.tokenizer import Encoded, Encoder, load_tokenizer

if TYPE_CHECKING:
    from finsight.config import ModelSettings, PredictSettings
    from finsight.model.ref import Artifact


@runtime_checkable
class Predictor(Protocol):
    """Scores texts: ``predict(texts)`` -> float32 ``(n, 3)`` probabilities in ``LABELS`` order.

    ``encode`` + ``submit`` split the same work in two so a caller can tokenize the next chunk
    (or write the previous one) while a chunk is scored; ``predict(texts)`` equals
    ``submit(encode(texts))()``. ``encode`` cleans each text with ``cleaning`` (the recipe the
    model was trained with, :attr:`finsight.model.ref.Artifact.cleaning`) before tokenizing it.
    """

    name: str  # the backend: torch, onnx, torchscript, triton
    source: str  # what it runs: a directory, a hub id or a server URL
    device: str  # "cpu" or "cuda..."
    labels: tuple[str, ...]
    max_length: int
    batch_size: int  # texts per model call
    cleaning: CleaningRecipe  # applied to every text; ``assumed`` when the model recorded none

    def predict(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode(self, texts: Sequence[str]) -> "Encoded": ...

    def predict_encoded(self, encoded: "Encoded") -> np.ndarray: ...

    def submit(self, encoded: "Encoded") -> Callable[[], np.ndarray]: ...


def cpu_threads(requested: int) -> int:
    """Intra-op threads: the requested count, else the cores this process may use."""
    if requested:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_batch_size(predict: PredictSettings, device: str) -> int:
    """predict.batch_size, else 64 on CPU and 1024 on a GPU (sorted batches keep padding low)."""
    if predict.batch_size:
        return int(predict.batch_size)
    return 64 if device == "cpu" else 1024


def encoder_for(artifact: Artifact, model: ModelSettings, *, input_names: Sequence[str] | None = None) -> Encoder:
    """The artifact's encoder: straight from tokenizer.json for a directory, via transformers
    for a hub id (downloaded or cached)."""
    max_length = artifact.max_length(model.max_length)
    if artifact.path is not None:
        return Encoder.from_dir(artifact.path, max_length=max_length, input_names=input_names)
    return Encoder.from_transformers(load_tokenizer(artifact.ref, model.revision),
                                     max_length=max_length, input_names=input_names)


def torch_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"predict.device={requested} but torch sees no CUDA GPU; "
                           "use --set predict.device=cpu")
    return requested


def torch_runtime(predict: PredictSettings) -> str:
    """The device for ``predict`` settings; on CPU also sets torch's intra-op threads."""
    import torch

    device = torch_device(predict.device)
    if device == "cpu":
        torch.set_num_threads(cpu_threads(predict.num_threads))
    return device


class EncoderPredictor:
    """Base of the tokenizer-driven backends.

    Subclasses set ``input_names`` (what the graph/model takes) and implement ``_forward``;
    they may override ``_finish`` to keep results on a device until the end of a call.
    """

    name = "base"
    device = "cpu"
    labels: tuple[str, ...] = LABELS

    def __init__(self, *, encoder: Encoder, order: np.ndarray, batch_size: int, source: str,
                 cleaning: CleaningRecipe):
        self.encoder = encoder
        self.cleaning = cleaning
        self.max_length = encoder.max_length
        self.input_names = encoder.input_names
        self.batch_size = int(batch_size)
        self.source = source
        self._order = np.asarray(order, dtype=np.int64)

    # ------------------------------------------------------------ public

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_encoded(self.encode(texts))

    def encode(self, texts: Sequence[str]) -> Encoded:
        return self.encoder.encode(self.clean(texts))

    def clean(self, texts: Sequence[str]) -> list[str]:
        """``texts`` as the model scores them: its cleaning recipe applied to each."""
        return [clean_text(text, self.cleaning) for text in texts]

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
            yield self.encoder.pad(encoded, order[start:start + self.batch_size])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source} max_length={self.max_length}>"
