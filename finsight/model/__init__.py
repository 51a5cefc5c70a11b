"""The model layer: what a model reference points at, its labels, tokenizer and files.

Every command that takes a model (train, evaluate, export, analyze, register, serve, triton)
resolves it here, so a path, an export dir, a hub id and a ``models:/`` registry URI mean the
same thing everywhere; every text is tokenized by one :class:`Encoder`.
"""

from finsight.model.ref import REGISTRY_PREFIX, Artifact, resolve_artifact, source_model
from finsight.model.tokenizer import INPUT_NAMES, Encoded, Encoder, load_tokenizer

__all__ = ["INPUT_NAMES", "REGISTRY_PREFIX", "Artifact", "Encoded", "Encoder", "load_tokenizer",
           "resolve_artifact", "source_model"]
