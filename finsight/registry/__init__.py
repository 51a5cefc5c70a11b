"""The registry's read side: MLflow run tracking and reading the model registry; mlflow is
imported only inside the calls that use it (and a missing mlflow is one error line).

- :mod:`~finsight.registry.tracking`: `finsight train` runs.
- :func:`resolve_model_uri`: ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> a local
  directory, downloaded once (the hook :func:`finsight.model.resolve_artifact` calls).
- :func:`list_versions`, :func:`set_alias`, :func:`pull_model`: `finsight models ...`.
- :mod:`~finsight.registry.refs`: what a ``models:/`` ref and an alias look like.

Registering a model (the write side, which needs predict and export) is :mod:`finsight.publish`.
"""

from finsight.registry.refs import REGISTRY_PREFIX, check_aliases, parse_ref
from finsight.registry.resolve import pull_model, resolve_model_uri
from finsight.registry.versions import list_versions, set_alias

__all__ = ["REGISTRY_PREFIX", "check_aliases", "list_versions", "parse_ref", "pull_model",
           "resolve_model_uri", "set_alias"]
