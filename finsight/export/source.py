"""The model being exported: loaded once, wrapped the way every exported graph sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from finsight.artifacts import directory_sha256
from finsight.data.recipe import DEFAULT_RECIPE, CleaningRecipe, clean_text
from finsight.errors import ModelError
from finsight.model.ref import resolve_artifact
from finsight.model.tokenizer import Encoder, load_tokenizer
from finsight.quiet import quiet

if TYPE_CHECKING:
    import contextlib

    from finsight.config import Settings

# Where torch's exporters and ONNX Runtime's optimizer and quantizers talk (the root logger
# included: the quantizers log there).
EXPORTER_LOGGERS = ("", "torch.onnx", "onnxscript", "onnx_ir")


def quiet_exporters() -> contextlib.AbstractContextManager[None]:
    """Silence the exporters' chatter: prints on stdout (which --json owns) and log warnings."""
    return quiet(*EXPORTER_LOGGERS, all_warnings=True, stdout=True)


@dataclass
class Source:
    """A sequence classifier in eval mode, fp32 on CPU, with what an export needs to know."""

    ref: str
    path: Path | None  # None for a hub id
    model: Any
    tokenizer: Any  # saved into the export dir
    encoder: Encoder  # how every predictor will tokenize for the exported graph
    labels: list[str]
    max_length: int
    input_names: list[str]
    manifest: dict[str, Any] = field(default_factory=dict)
    cleaning: CleaningRecipe = DEFAULT_RECIPE  # the model's recipe: exports carry it over

    @property
    def recorded_cleaning(self) -> dict[str, bool] | None:
        """The recipe for an export's finsight.json; None when the model recorded none."""
        return None if self.cleaning.assumed else self.cleaning.as_dict()

    @property
    def sha256(self) -> str | None:
        return directory_sha256(self.path) if self.path is not None else None

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else self.ref.rsplit("/", 1)[-1]

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """int64 arrays padded to the longest text in ``texts``, cleaned and tokenized as the
        predictors clean and tokenize them."""
        return self.encoder([clean_text(text, self.cleaning) for text in texts])

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """The reference: the plain PyTorch model, called the way users call it."""
        import torch

        self.model.eval()  # exporters and tracers may switch it to training mode (dropout)
        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v) for k, v in batch.items()})
        return out.logits.float().numpy()

    def example_inputs(self) -> tuple:
        """Two texts of different lengths, so padding is traced and no axis is size 1."""
        import torch

        batch = self.encode(["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "Shares fell."])
        return tuple(torch.from_numpy(batch[name]) for name in self.input_names)


def load_source(ref: str | Path, settings: Settings) -> Source:
    """Load a trained model dir (with or without finsight.json), a hub id or a registered model."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from finsight import hub

    artifact = resolve_artifact(str(ref), settings)
    if artifact.is_export:
        raise ModelError(f"{artifact.path} is already an export ({artifact.format}); pass the model "
                         f"dir it came from: {artifact.manifest.get('source_model')}")
    local = artifact.path is not None
    tokenizer = load_tokenizer(artifact.location, None if local else settings.model.revision)
    kwargs = {} if local else hub.pretrained_kwargs(settings.model.revision)
    try:
        with quiet(progress_bars=True):
            model = AutoModelForSequenceClassification.from_pretrained(
                artifact.location, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        if not local:
            raise hub.load_error(str(ref), exc) from None
        raise ModelError(f"cannot load model '{ref}' for export: {str(exc).splitlines()[0]}; pass a "
                         "model dir written by `finsight train` (or save_pretrained) or a hub id "
                         "that is in the local cache") from None
    model.eval()
    labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    max_length = artifact.max_length(settings.model.max_length)
    encoder = Encoder.from_transformers(tokenizer, max_length=max_length).for_model(model)
    return Source(ref=str(ref), path=artifact.path, model=model, tokenizer=tokenizer, encoder=encoder,
                  labels=labels, max_length=max_length, input_names=list(encoder.input_names),
                  manifest=artifact.manifest, cleaning=artifact.cleaning)


def logits_module(model):
    """``model`` as a module of positional int64 inputs returning logits only.

    The 2-D attention mask becomes an additive 4-D mask here, written the way transformers
    4.x's SDPA path wrote it (unsqueeze, unsqueeze, expand, 1 - mask, masked_fill): that is
    the pattern ONNX Runtime's BERT attention fusion recognises, and a prepared 4-D mask is
    passed through by transformers 5 unchanged. It also leaves no data-dependent branch
    (transformers skips the mask when nothing is padded) for a trace to freeze.
    """
    import torch

    class LogitsModule(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            batch, length = attention_mask.shape
            expanded = attention_mask.unsqueeze(1).unsqueeze(2).expand(batch, 1, length, length)
            inverted = 1.0 - expanded.to(torch.float32)
            mask = inverted.masked_fill(inverted.to(torch.bool), torch.finfo(torch.float32).min)
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.inner(input_ids=input_ids, attention_mask=mask, return_dict=True, **extra).logits

    return LogitsModule(model).eval()
