"""MLflow run tracking and the model registry; mlflow is imported only inside the calls that use it.

- :mod:`~finsight.registry.tracking`: `finsight train` runs.
- :func:`register_model`: a model or export dir -> a tagged, verified version (a pyfunc model).
- :func:`resolve_model_uri`: ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> a local
  directory, downloaded once (the hook :func:`finsight.model.resolve_artifact` calls).
- :func:`list_versions`, :func:`set_alias`, :func:`pull_model`: `finsight models ...`.
"""

from finsight.registry.register import register_model
from finsight.registry.resolve import pull_model, resolve_model_uri
from finsight.registry.versions import list_versions, set_alias

__all__ = ["list_versions", "pull_model", "register_model", "resolve_model_uri", "set_alias"]
