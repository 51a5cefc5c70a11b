"""The ONNX Runtime backend: an export dir with model.onnx; CUDA provider when present."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from finsight.errors import BackendError, ModelError
from finsight.model.ref import Artifact
from finsight.model.tokenizer import INPUT_NAMES
from finsight.predict.base import EncoderPredictor, cpu_threads, default_batch_size, encoder_for
from finsight.predict.scores import softmax

if TYPE_CHECKING:
    from finsight.config import ModelSettings, PredictSettings

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def session_options(num_threads: int, spin_wait: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One model call at a time: all cores go to intra-op parallelism (matmuls), none to
    # running independent graph nodes side by side.
    options.intra_op_num_threads = cpu_threads(num_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if not spin_wait:
        # Idle worker threads sleep instead of spinning: the cores stay free for the other
        # threads of a server (measured: 1-client p50 37 -> 16 ms under finsight serve).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wants_gpu = device.startswith("cuda")
    if wants_gpu and CUDA not in available:
        raise BackendError(f"predict.device={device} but onnxruntime has no CUDA provider "
                           "(install finsight[gpu], i.e. onnxruntime-gpu)")
    if CUDA in available and device != "cpu":
        return [CUDA, CPU]
    return [CPU]


class OnnxPredictor(EncoderPredictor):
    name = "onnx"

    def __init__(self, artifact: Artifact, predict: PredictSettings, *, model: ModelSettings):
        import onnxruntime as ort

        model_file = artifact.model_file
        chosen = providers(predict.device)
        try:
            self.session = ort.InferenceSession(str(model_file),
                                                session_options(predict.num_threads, predict.spin_wait),
                                                providers=chosen)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load {model_file}: {exc}".splitlines()[0]) from None
        self.device = "cuda" if self.session.get_providers()[0] == CUDA else "cpu"
        outputs = [o.name for o in self.session.get_outputs()]
        self._output = "logits" if "logits" in outputs else outputs[0]
        inputs = [i.name for i in self.session.get_inputs()]
        unknown = set(inputs) - set(INPUT_NAMES)
        if unknown:
            raise ModelError(f"{model_file}: unexpected graph inputs {sorted(unknown)}; finsight "
                             "feeds input_ids, attention_mask and token_type_ids")
        super().__init__(encoder=encoder_for(artifact, model, input_names=inputs), order=artifact.label_order(),
                         batch_size=default_batch_size(predict, self.device), source=str(artifact.path),
                         cleaning=artifact.cleaning)

    def _forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        logits = self.session.run([self._output], batch)[0]
        return softmax(logits)
