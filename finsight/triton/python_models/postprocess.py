"""Triton python backend: logits -> ``probabilities`` in finsight's label order and ``label``.

The label order comes from the export (``label_order`` parameter, written by ``finsight
triton build``); the label is the most probable one, a tie going to the first, like finsight's
own ``label`` column.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the stub


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.order = np.asarray(json.loads(params["label_order"]), dtype=np.int64)
        self.labels = np.asarray([label.encode("utf-8") for label in json.loads(params["labels"])],
                                 dtype=object)

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy().astype(np.float32)
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = (shifted / shifted.sum(axis=1, keepdims=True))[:, self.order]
            labels = self.labels[probs.argmax(axis=1)].reshape(-1, 1)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("probabilities", np.ascontiguousarray(probs, dtype=np.float32)),
                pb_utils.Tensor("label", labels)]))
        return responses
