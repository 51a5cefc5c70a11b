"""The torch backend: a Hugging Face model dir or hub id, SDPA attention, fp16/bf16 on GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from finsight.errors import ModelError
from finsight.labels import canonical_order
from finsight.model.ref import Artifact
from finsight.predict.base import EncoderPredictor, default_batch_size, encoder_for, torch_runtime

if TYPE_CHECKING:
    from finsight.config import ModelSettings, PredictSettings


def torch_dtype(precision: str, device: str):
    import torch

    if device == "cpu":  # fp16 kernels are slow or missing on CPU; bf16 only when asked
        return torch.bfloat16 if precision == "bf16" else torch.float32
    return {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16,
            "fp32": torch.float32}[precision]


class TorchPredictor(EncoderPredictor):
    name = "torch"

    def __init__(self, artifact: Artifact, predict: PredictSettings, *, model: ModelSettings):
        from transformers import AutoModelForSequenceClassification

        self.device = torch_runtime(predict)
        self.dtype = torch_dtype(predict.precision, self.device)
        from finsight import hub
        from finsight.quiet import quiet

        kwargs = hub.pretrained_kwargs(model.revision) if artifact.path is None else {}
        try:
            with quiet(progress_bars=True):
                loaded = AutoModelForSequenceClassification.from_pretrained(
                    artifact.location, dtype=self.dtype, attn_implementation="sdpa", **kwargs)
        except (OSError, ValueError) as exc:
            if artifact.path is None:
                raise hub.load_error(artifact.ref, exc) from None
            raise ModelError(f"cannot load model {artifact.location}: {exc}".splitlines()[0]) from None
        self.model = loaded.to(self.device).eval()
        names = [loaded.config.id2label[i] for i in range(loaded.config.num_labels)]
        encoder = encoder_for(artifact, model).for_model(loaded)
        super().__init__(encoder=encoder, order=canonical_order(names, source=artifact.location),
                         batch_size=default_batch_size(predict, self.device), source=artifact.location,
                         cleaning=artifact.cleaning)
        self._pin = self.device.startswith("cuda")

    def _forward(self, batch: dict[str, np.ndarray]) -> Any:
        import torch

        if "attention_mask" in batch and batch["attention_mask"].all():
            # A batch with no padding (common once batches are sorted by length) needs no mask:
            # transformers then skips building it and its per-batch device sync, and SDPA can
            # take its mask-free kernels. The result is the same.
            batch = {k: v for k, v in batch.items() if k != "attention_mask"}
        with torch.inference_mode():
            tensors = {k: self._to_device(v) for k, v in batch.items()}
            logits = self.model(**tensors).logits
            # Softmax on the device, no sync: the GPU runs ahead while the next batch is built.
            return torch.softmax(logits.float(), dim=-1)

    def _to_device(self, array: np.ndarray):
        import torch

        tensor = torch.from_numpy(array)
        if self._pin:
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def _finish(self, outputs: list[Any]) -> np.ndarray:
        import torch

        return torch.cat(outputs).cpu().numpy()

