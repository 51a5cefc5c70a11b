"""The torch backend: a Hugging Face model dir or hub id, SDPA attention, fp16/bf16 on GPU."""

from __future__ import annotations

from typing import Any

import numpy as np

from finsight.errors import BackendError, ModelError
from finsight.labels import canonical_order
from finsight.model.ref import Artifact
from finsight.model.tokenizer import Encoder, load_tokenizer
from finsight.predict.base import EncoderPredictor, cpu_threads


def torch_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"predict.device={requested} but torch sees no CUDA GPU; "
                           "use --set predict.device=cpu")
    return requested


def torch_runtime(opts: Any) -> str:
    """The device for ``predict`` settings; on CPU also sets torch's intra-op threads."""
    import torch

    device = torch_device(opts.device)
    if device == "cpu":
        torch.set_num_threads(cpu_threads(opts.num_threads))
    return device


def torch_dtype(precision: str, device: str):
    import torch

    if device == "cpu":  # fp16 kernels are slow or missing on CPU; bf16 only when asked
        return torch.bfloat16 if precision == "bf16" else torch.float32
    return {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16,
            "fp32": torch.float32}[precision]


def encoder_for(artifact: Artifact, settings: Any, *, input_names=None) -> Encoder:
    """The artifact's encoder: straight from tokenizer.json for a directory, via transformers
    for a hub id (downloaded or cached)."""
    max_length = artifact.max_length(settings.model.max_length)
    if artifact.path is not None:
        return Encoder.from_dir(artifact.path, max_length=max_length, input_names=input_names)
    return Encoder.from_transformers(load_tokenizer(artifact.ref, settings.model.revision),
                                     max_length=max_length, input_names=input_names)


class TorchPredictor(EncoderPredictor):
    name = "torch"

    def __init__(self, artifact: Artifact, settings: Any):
        from transformers import AutoModelForSequenceClassification

        opts = settings.predict
        self.device = torch_runtime(opts)
        self.dtype = torch_dtype(opts.precision, self.device)
        from finsight import hub
        from finsight.quiet import quiet

        kwargs = hub.pretrained_kwargs(settings.model.revision) if artifact.path is None else {}
        try:
            with quiet(progress_bars=True):
                model = AutoModelForSequenceClassification.from_pretrained(
                    artifact.location, dtype=self.dtype, attn_implementation="sdpa", **kwargs)
        except (OSError, ValueError) as exc:
            if artifact.path is None:
                raise hub.load_error(artifact.ref, exc) from None
            raise ModelError(f"cannot load model {artifact.location}: {exc}".splitlines()[0]) from None
        self.model = model.to(self.device).eval()
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        encoder = encoder_for(artifact, settings).for_model(model)
        super().__init__(encoder=encoder, order=canonical_order(names, source=artifact.location),
                         batch_size=default_batch_size(opts, self.device), source=artifact.location)
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


def default_batch_size(opts: Any, device: str) -> int:
    """predict.batch_size, else 64 on CPU and 1024 on a GPU (sorted batches keep padding low)."""
    if opts.batch_size:
        return int(opts.batch_size)
    return 64 if device == "cpu" else 1024
