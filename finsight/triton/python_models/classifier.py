"""Triton python backend: the exported ONNX classifier run with onnxruntime (token tensors -> logits).

For servers without Triton's onnxruntime backend (e.g. the tritonserver in nvidia-pytriton).
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the stub


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        available = ort.get_available_providers()
        gpu = args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in available
        providers = (
            [("CUDAExecutionProvider", {"device_id": int(args.get("model_instance_device_id", 0))}),
             "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"])
        model_file = Path(__file__).resolve().parent / params.get("model_file", "model.onnx")
        self.session = ort.InferenceSession(str(model_file), options, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.output = config["output"][0]["name"]

    def execute(self, requests):
        responses = []
        for request in requests:
            feed = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                    for name in self.inputs}
            logits = self.session.run([self.output], feed)[0]
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(self.output, np.asarray(logits, dtype=np.float32))]))
        return responses
