"""One predictor for every backend: ``load_predictor(ref, settings)`` -> ``Predictor``.

``predictor.predict(texts)`` returns float32 ``(n, 3)`` probabilities in canonical
``LABELS`` order whatever the backend (torch, onnx, torchscript, triton).
"""

from finsight.labels import LABELS
from finsight.predict.base import Encoded, EncoderPredictor, Predictor
from finsight.predict.loader import (BACKENDS, Backend, checked_artifact, load_predictor, register_backend,
                                     verify_artifact)

__all__ = ["BACKENDS", "Backend", "Encoded", "EncoderPredictor", "LABELS", "Predictor", "checked_artifact",
           "load_predictor", "register_backend", "verify_artifact"]
