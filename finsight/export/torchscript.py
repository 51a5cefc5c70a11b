"""TorchScript: the classifier traced on example inputs, saved as model.pt."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from finsight.errors import ConfigError, ModelError
from finsight.export.source import Source, logits_module
from finsight.model.formats import FORMATS

if TYPE_CHECKING:
    from finsight.config import ExportSettings


class TorchScriptExporter:
    format = "torchscript"
    model_file = FORMATS["torchscript"].model_file

    def precision(self, cfg: ExportSettings) -> str:
        if cfg.quantize != "none" or cfg.fp16:
            raise ConfigError("--quantize int8 and --fp16 apply to --format onnx only; export "
                              "TorchScript with --quantize none and without --fp16")
        return "fp32"

    def build(self, source: Source, out_dir: Path, cfg: ExportSettings, *, step: Callable[[str], None],
              **_: Any) -> dict[str, Any]:
        import torch

        step("tracing the model with TorchScript")
        module = logits_module(source.model)
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")  # TracerWarnings on shape asserts in transformers
                traced = torch.jit.trace(module, source.example_inputs(), check_trace=False)
        except Exception as exc:  # noqa: BLE001 - the tracer raises many types
            raise ModelError(f"torch.jit.trace failed for {source.ref}: "
                             f"{str(exc).strip().splitlines()[0]}") from None
        torch.jit.save(traced, str(out_dir / self.model_file))
        return {"opset": None, "optimized": False}

    def runner(self, model_file: Path, precision: str) -> tuple[Callable[[dict], np.ndarray], str]:
        """Reload the saved file (not the in-memory trace), as a loader would."""
        import torch

        try:
            module = torch.jit.load(str(model_file), map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"the exported {model_file.name} does not load: "
                             f"{str(exc).splitlines()[0]}") from None

        def run(batch: dict[str, np.ndarray]) -> np.ndarray:
            # Batches come from Source.encode, keyed in the traced positional order.
            with torch.inference_mode():
                return module(*(torch.from_numpy(v) for v in batch.values())).float().numpy()

        return run, "torch-cpu"
