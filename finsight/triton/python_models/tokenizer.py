"""Triton python backend: raw ``TEXT`` (TYPE_STRING) -> cleaned -> padded int64 token tensors.

Cleans with finsight's own ``clean_text`` and the model's recipe (the ``cleaning`` parameter)
and tokenizes with its :class:`Encoder`, both shipped beside this file (``finsight/``) by
``finsight triton build``, so the server and the local predictors share one cleaning and one
tokenization rule.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import triton_python_backend_utils as pb_utils  # noqa: E402  (provided by the stub)

from finsight.data.recipe import DEFAULT_RECIPE, CleaningRecipe, clean_text  # noqa: E402  (shipped)
from finsight.model.tokenizer import Encoder  # noqa: E402  (the shipped copy)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.outputs = [output["name"] for output in config["output"]]
        # finsight triton build always writes the parameter; a hand-written config may lack it.
        recorded = params.get("cleaning")
        self.recipe = CleaningRecipe.from_dict(json.loads(recorded)) if recorded else DEFAULT_RECIPE
        self.encoder = Encoder.from_dir(Path(__file__).resolve().parent,
                                        max_length=int(params["max_length"]), input_names=self.outputs)

    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            texts = [clean_text(t.decode("utf-8") if isinstance(t, bytes) else str(t), self.recipe)
                     for t in raw]
            batch = self.encoder(texts)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, batch[name]) for name in self.outputs]))
        return responses
