"""The registry's write side: a model or export dir becomes a tagged, verified version.

- :func:`register_model`: `finsight register` (checks, logs a pyfunc model, verifies it scores
  like the directory, then creates the version and sets aliases).
- :mod:`~finsight.publish.pyfunc`: the MLflow ``pyfunc`` model a version holds.

It sits above predict and export (it scores the artifact to verify it); reading the registry
(resolve, list, alias, pull) is :mod:`finsight.registry`, below the model layer.
"""

from finsight.publish.register import register_model

__all__ = ["register_model"]
