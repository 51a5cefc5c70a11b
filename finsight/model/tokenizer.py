"""Tokenize, truncate and pad: the one tokenization rule.

Every local predictor, export validation and the Triton tokenizer model encode text with an
:class:`Encoder`, so a text gets the same token ids wherever it is scored. An encoder loads
straight from a model or export directory's ``tokenizer.json`` with the Rust ``tokenizers``
library (no transformers import, numpy 1 or 2), or wraps a loaded transformers fast tokenizer
(a hub id). One ``encode_batch`` call tokenizes a whole list in parallel, off the GIL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from finsight.errors import ModelError

# Graph inputs in the positional order a traced module takes them.
INPUT_NAMES: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


@dataclass
class Encoded:
    """Token ids of a list of texts, unpadded; ``lengths`` count special tokens too."""

    ids: list[list[int]]
    lengths: np.ndarray  # int64 (n,)
    truncated: np.ndarray  # bool (n,): the text had more than max_length tokens

    def __len__(self) -> int:
        return len(self.ids)


class Encoder:
    """A Rust tokenizer with truncation at ``max_length`` and padding to the longest row."""

    def __init__(self, tokenizer: Any, *, max_length: int, pad_id: int,
                 input_names: Sequence[str] = INPUT_NAMES):
        self.max_length = int(max_length)
        self.pad_id = int(pad_id)
        self.input_names = tuple(input_names)
        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)

    # ------------------------------------------------------------ construction

    @classmethod
    def from_dir(cls, directory: str | Path, *, max_length: int,
                 input_names: Sequence[str] | None = None) -> "Encoder":
        """From ``tokenizer.json`` (+ ``tokenizer_config.json``) in a model or export dir."""
        from tokenizers import Tokenizer

        directory = Path(directory)
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise ModelError(f"{directory}: no {TOKENIZER_FILE}; finsight needs a fast (Rust) "
                             "tokenizer: save it with AutoTokenizer.from_pretrained(...)"
                             ".save_pretrained(DIR)")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exceptions
            raise ModelError(f"cannot read {path}: {exc}".splitlines()[0]) from None
        config = _read_json(directory / TOKENIZER_CONFIG)
        names = input_names or config.get("model_input_names") or INPUT_NAMES
        return cls(tokenizer, max_length=max_length, pad_id=_pad_id(tokenizer, config),
                   input_names=names)

    @classmethod
    def from_transformers(cls, tokenizer: Any, *, max_length: int,
                          input_names: Sequence[str] | None = None) -> "Encoder":
        """From a loaded transformers fast tokenizer (its Rust backend, copied)."""
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError("finsight needs a fast (Rust) tokenizer; save the model with a "
                             "tokenizer.json (AutoTokenizer.from_pretrained(...).save_pretrained(DIR))")
        backend = tokenizer.backend_tokenizer
        pad = tokenizer.pad_token_id
        return cls(backend.__class__.from_str(backend.to_str()), max_length=max_length,
                   pad_id=0 if pad is None else pad,
                   input_names=input_names or tokenizer.model_input_names)

    def for_model(self, model: Any) -> "Encoder":
        """This encoder limited to the inputs ``model.forward`` takes: the tokenizer's own
        (input_ids and attention_mask always), in :data:`INPUT_NAMES` order."""
        import inspect

        accepted = inspect.signature(model.forward).parameters
        wanted = set(self.input_names) | {"input_ids", "attention_mask"}
        names = [name for name in INPUT_NAMES if name in wanted and name in accepted]
        return Encoder(self._tokenizer, max_length=self.max_length, pad_id=self.pad_id, input_names=names)

    # ------------------------------------------------------------ encoding

    def encode(self, texts: Sequence[str]) -> Encoded:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        ids = [e.ids for e in encodings]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(ids))
        return Encoded(ids=ids, lengths=lengths, truncated=truncated)

    def word_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Per text, the ``(start, end)`` character span of each word the model sees: the
        tokenizer's own words (its pre-tokenizer's), each covering all its sub-word pieces,
        in order; special tokens and words cut off at ``max_length`` are left out."""
        spans = []
        for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=True):
            words: dict[int, list[int]] = {}
            for word, (start, end) in zip(encoding.word_ids, encoding.offsets):
                if word is not None and end > start:
                    words.setdefault(word, [start, end])[1] = end
            spans.append([(start, end) for start, end in words.values()])
        return spans

    def pad(self, encoded: Encoded, rows: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
        """int64 ``input_names`` arrays for ``rows`` of ``encoded`` (all rows by default),
        padded to the longest of them; single-segment text, so token types are all 0."""
        idx = np.arange(len(encoded)) if rows is None else np.asarray(rows, dtype=np.int64)
        lengths = encoded.lengths[idx]
        width = int(lengths.max()) if len(idx) else 0
        input_ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
        for row, i in enumerate(idx):
            input_ids[row, :lengths[row]] = encoded.ids[i]
        batch = {"input_ids": input_ids,
                 "attention_mask": (np.arange(width) < lengths[:, None]).astype(np.int64),
                 "token_type_ids": np.zeros_like(input_ids)}
        return {name: batch[name] for name in INPUT_NAMES if name in self.input_names}

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Encode and pad ``texts`` in one step."""
        return self.pad(self.encode(texts))


def _read_json(path: Path) -> dict[str, Any]:
    # Not finsight.io.read_json: this module is shipped into the Triton repository with
    # errors.py alone (triton/repository.py _SHIPPED), where finsight.io and pandas are absent.
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ModelError(f"{path} is not valid JSON") from None


def _pad_id(tokenizer: Any, config: dict[str, Any]) -> int:
    """The pad token's id: tokenizer_config's pad_token, else the tokenizer's own padding."""
    token = config.get("pad_token")
    if isinstance(token, dict):
        token = token.get("content")
    if token is not None and tokenizer.token_to_id(str(token)) is not None:
        return int(tokenizer.token_to_id(str(token)))
    padding = tokenizer.padding
    return int(padding["pad_id"]) if padding else 0


def load_tokenizer(location: str, revision: str | None = None):
    """A transformers fast tokenizer (hub ids, and the torch/export paths that save one)."""
    from transformers import AutoTokenizer

    from finsight import hub

    local = Path(location).expanduser().is_dir()
    kwargs = {} if local else hub.pretrained_kwargs(revision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as exc:
        if not local:
            raise hub.load_error(location, exc, what="tokenizer") from None
        raise ModelError(f"cannot load the tokenizer of {location}: {exc}".splitlines()[0]) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{location}: finsight needs a fast (Rust) tokenizer; save the model with "
                         "a tokenizer.json (AutoTokenizer.from_pretrained(...).save_pretrained(DIR))")
    return tokenizer
