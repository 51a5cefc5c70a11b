"""`finsight serve`: a litestar HTTP service over the same predictor `analyze` uses.

``create_app(settings, predictor)`` builds the app (finsight/serve/app.py); ``run(settings)``
loads the predictor and runs it under uvicorn (finsight/serve/server.py). Scoring goes through
``finsight.predict.scores`` and ``finsight.predict.document`` only: no model code lives here.
litestar and uvicorn come with the ``serve`` extra and are imported only by these modules.
"""

from __future__ import annotations

__all__ = ["create_app", "run"]


def __getattr__(name: str):
    if name == "create_app":
        from finsight.serve.app import create_app

        return create_app
    if name == "run":
        from finsight.serve.server import run

        return run
    raise AttributeError(name)
