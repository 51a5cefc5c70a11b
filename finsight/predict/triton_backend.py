"""The Triton client backend: tokenizes here, sends padded batches to a Triton server over HTTP.

The tokenizer, labels and max_length come from the local model/export dir given as the ref,
so truncation and label order are the same as in the other backends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from finsight.errors import BackendError
from finsight.model.ref import Artifact
from finsight.predict.base import EncoderPredictor, softmax
from finsight.model.tokenizer import INPUT_NAMES
from finsight.predict.torch_backend import default_batch_size, encoder_for


def _client_module():
    try:
        import tritonclient.http as httpclient
    except ImportError:
        raise BackendError("the triton backend needs tritonclient: pip install 'finsight[triton]'") from None
    return httpclient


class TritonPredictor(EncoderPredictor):
    name = "triton"

    def __init__(self, artifact: Artifact, settings: Any):
        httpclient = _client_module()
        self._http = httpclient
        cfg = settings.triton
        self.model_name = cfg.model_name
        try:
            self.client = httpclient.InferenceServerClient(
                url=cfg.url, connection_timeout=cfg.timeout_s, network_timeout=cfg.timeout_s)
            ready = self.client.is_model_ready(cfg.model_name)
            metadata = self.client.get_model_metadata(cfg.model_name) if ready else {}
        except Exception as exc:  # noqa: BLE001 - the client raises socket and HTTP errors alike
            raise BackendError(f"Triton server at {cfg.url} is unreachable ({exc}); start it or "
                               "set triton.url") from None
        if not ready:
            raise BackendError(f"Triton at {cfg.url} has no ready model '{cfg.model_name}'; "
                               "check triton.model_name and the server's model repository")
        outputs = [o["name"] for o in metadata.get("outputs", [])]
        self._output = "logits" if "logits" in outputs or not outputs else outputs[0]
        batch_size = min(default_batch_size(settings.predict, "cpu"), cfg.max_batch_size)
        inputs = [i["name"] for i in metadata.get("inputs", [])] or list(INPUT_NAMES)
        encoder = encoder_for(artifact, settings, input_names=inputs)
        super().__init__(encoder=encoder, order=artifact.label_order(), batch_size=batch_size,
                         source=f"triton://{cfg.url}/{cfg.model_name}")

    def _forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        inputs = []
        for name, array in batch.items():
            item = self._http.InferInput(name, list(array.shape), "INT64")
            item.set_data_from_numpy(array)
            inputs.append(item)
        try:
            result = self.client.infer(self.model_name, inputs,
                                       outputs=[self._http.InferRequestedOutput(self._output)])
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"Triton inference on '{self.model_name}' failed: {exc}") from None
        return softmax(result.as_numpy(self._output))
