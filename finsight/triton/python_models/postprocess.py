"""Triton python backend: logits -> ``probabilities`` in finsight's label order and ``label``.

The label order comes from the export (``label_order`` parameter, written by ``finsight
triton build``); softmax and the label rule are finsight's own ``predict/scores.py``, shipped
beside this file (``finsight/``), so the server's label is the one every other backend gives.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402  (provided by the stub)

from finsight.predict.scores import label_ids, softmax  # noqa: E402  (the shipped copy)


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
            probs = softmax(logits)[:, self.order]
            labels = self.labels[label_ids(probs)].reshape(-1, 1)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("probabilities", np.ascontiguousarray(probs, dtype=np.float32)),
                pb_utils.Tensor("label", labels)]))
        return responses
