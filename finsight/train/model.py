"""Where a fine-tune starts: a hub id, a local HF directory or `tiny`, with a checked label head.

Label rule: a checkpoint whose classification head already names the canonical labels
(ProsusAI/finbert: 0 positive, 1 negative, 2 neutral) keeps its order and weights; any
other starting point gets a new head in canonical order. A head with a different number
of labels, or names that mean something else, is refused rather than silently replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from finsight.errors import ModelError
from finsight.labels import LABELS, checkpoint_labels
from finsight.model.ref import looks_like_path

if TYPE_CHECKING:
    from finsight.config import ModelSettings

TINY = "tiny"
_GENERIC = re.compile(r"^label_\d+$", re.IGNORECASE)


@dataclass
class Start:
    """A loaded starting point: the model, its tokenizer and how its head was chosen."""

    model: object
    tokenizer: object
    base_model: str
    head: str  # "kept" (checkpoint head reused) or "new"

    @property
    def labels(self) -> list[str]:
        config = self.model.config
        return [config.id2label[i] for i in range(config.num_labels)]


def head_labels(config, *, source: str) -> list[str] | None:
    """The canonical label names of a checkpoint's head in id order; None if it has no usable head.

    Raises ModelError when the head cannot serve the canonical labels.
    """
    architectures = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return None
    names = [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels)]
    if all(_GENERIC.match(n) for n in names):
        if config.num_labels != len(LABELS):
            raise _mismatch(source, names)
        return None
    canonical = checkpoint_labels(names)
    if canonical is None:
        raise _mismatch(source, names)
    return canonical


def _mismatch(source: str, names: Sequence[str]) -> ModelError:
    return ModelError(
        f"model {source} has a {len(names)}-label head ({', '.join(names)}) but the data has "
        f"{len(LABELS)} labels ({', '.join(LABELS)}); start from a base model without a "
        "classification head, or from a checkpoint whose head names these labels")


def load_start(model_settings: ModelSettings, *, train_texts: Sequence[str], tiny_dir: Path, seed: int) -> Start:
    """Load the starting model and tokenizer named by ``model.name_or_path``."""
    name = model_settings.name_or_path
    if name == TINY:
        return _load_tiny(model_settings, train_texts=train_texts, tiny_dir=tiny_dir, seed=seed)
    local = Path(name).expanduser()
    if local.is_dir():
        return _load_hf(str(local.resolve()), model_settings, base_model=str(local.resolve()))
    if looks_like_path(name):
        raise ModelError(f"model dir {name} not found; pass an existing Hugging Face model dir, "
                         "a hub id, or 'tiny' to --model")
    return _load_hf(name, model_settings, base_model=name, hub=True)


def _load_tiny(model_settings: ModelSettings, *, train_texts, tiny_dir: Path, seed: int) -> Start:
    """The offline tiny BERT, built once per run (a resumed run reuses the same vocab)."""
    from finsight.train.tiny import build_tiny_model

    if not (tiny_dir / "config.json").is_file():
        build_tiny_model(train_texts, tiny_dir, hidden_size=model_settings.tiny_hidden_size,
                         num_layers=model_settings.tiny_layers, vocab_size=model_settings.tiny_vocab_size,
                         max_length=model_settings.max_length, seed=seed)
    start = _load_hf(str(tiny_dir), model_settings, base_model=TINY)
    start.head = "new"  # built with canonical labels and random weights a moment ago
    return start


def _load_hf(ref: str, model_settings: ModelSettings, *, base_model: str, hub: bool = False) -> Start:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from finsight import hub as hf_hub
    from finsight.quiet import quiet

    kwargs = hf_hub.pretrained_kwargs(model_settings.revision) if hub else {}
    try:
        config = AutoConfig.from_pretrained(ref, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(ref, use_fast=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(ref, exc, hub=hub) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"model {ref} has no fast tokenizer (tokenizer.json); save one with "
                         "`AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(DIR)`")
    kept = head_labels(config, source=ref)
    labels = kept or list(LABELS)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    try:
        with quiet(progress_bars=True):
            model = AutoModelForSequenceClassification.from_pretrained(
                ref, config=config, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(ref, exc, hub=hub) from None
    if kept is None and _had_head(config):
        _reset_head(model)
    return Start(model=model, tokenizer=tokenizer, base_model=base_model,
                 head="kept" if kept else "new")


def _had_head(config) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))


def _reset_head(model) -> None:
    """A checkpoint head with meaningless names (LABEL_0..) starts fresh, like a new head.

    Done by hand: transformers marks loaded modules as initialised, so ``_init_weights``
    would leave them as they are.
    """
    import torch

    std = float(getattr(model.config, "initializer_range", 0.02) or 0.02)
    with torch.no_grad():
        for name, child in model.named_children():
            if name == model.base_model_prefix:
                continue
            for module in child.modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight.normal_(0.0, std)
                    if module.bias is not None:
                        module.bias.zero_()
                elif hasattr(module, "reset_parameters") and not list(module.children()):
                    module.reset_parameters()


def _load_error(ref: str, exc: Exception, *, hub: bool) -> ModelError:
    from finsight import hub as hf_hub

    if hub:
        return hf_hub.load_error(ref, exc)
    return ModelError(f"cannot load model {ref}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}")
