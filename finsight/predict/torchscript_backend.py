"""The TorchScript backend: an export dir with model.pt (traced on the export's inputs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from finsight.errors import ModelError
from finsight.model.ref import Artifact
from finsight.model.tokenizer import INPUT_NAMES
from finsight.predict.base import EncoderPredictor, default_batch_size, encoder_for, torch_runtime

if TYPE_CHECKING:
    from finsight.config import ModelSettings, PredictSettings


class TorchScriptPredictor(EncoderPredictor):
    name = "torchscript"

    def __init__(self, artifact: Artifact, predict: PredictSettings, *, model: ModelSettings):
        import torch

        self.device = torch_runtime(predict)
        model_file = artifact.model_file
        try:
            self.module = torch.jit.load(str(model_file), map_location=self.device).eval()
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"cannot load {model_file}: {exc}".splitlines()[0]) from None
        # Traced modules take positional inputs, in the order the manifest records.
        inputs = [i["name"] for i in artifact.manifest.get("inputs", [])] or list(INPUT_NAMES)
        super().__init__(encoder=encoder_for(artifact, model, input_names=inputs), order=artifact.label_order(),
                         batch_size=default_batch_size(predict, self.device), source=str(artifact.path),
                         cleaning=artifact.cleaning)

    def _forward(self, batch: dict[str, np.ndarray]) -> Any:
        import torch

        with torch.inference_mode():
            args = [torch.from_numpy(batch[name]).to(self.device) for name in self.input_names]
            out = self.module(*args)
            logits = out["logits"] if isinstance(out, dict) else out[0] if isinstance(out, (tuple, list)) else out
            return torch.softmax(logits.float(), dim=-1)

    def _finish(self, outputs: list[Any]) -> np.ndarray:
        import torch

        return torch.cat(outputs).cpu().numpy()
