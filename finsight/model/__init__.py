"""The model layer: what a model reference points at, its labels, tokenizer and files.

Every command that takes a model (train, evaluate, export, analyze, register, serve, triton)
resolves it here, so a path, an export dir, a hub id and a ``models:/`` registry URI mean the
same thing everywhere.
"""

from finsight.model.ref import REGISTRY_PREFIX, Artifact, find_export, resolve_artifact, source_model

__all__ = ["REGISTRY_PREFIX", "Artifact", "find_export", "resolve_artifact", "source_model"]
