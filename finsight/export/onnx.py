"""ONNX: torch.onnx export, ONNX Runtime transformer fusion, fp16 conversion, int8 (searched)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from finsight.errors import ConfigError, ModelError
from finsight.export import quantize
from finsight.export.source import Source, logits_module, quiet_exporters
from finsight.model.formats import FORMATS, OUTPUT

if TYPE_CHECKING:
    from finsight.config import DataSettings, ExportSettings
    from finsight.export.validate import ValidationSet

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class OnnxExporter:
    format = "onnx"
    model_file = FORMATS["onnx"].model_file

    def precision(self, cfg: ExportSettings) -> str:
        if cfg.fp16 and cfg.quantize == "int8":
            raise ConfigError("--fp16 and --quantize int8 exclude each other (export.fp16, "
                              "export.quantize); pick one")
        return "int8" if cfg.quantize == "int8" else "fp16" if cfg.fp16 else "fp32"

    def build(self, source: Source, out_dir: Path, cfg: ExportSettings, *, step: Callable[[str], None],
              data: ValidationSet | None = None, data_settings: DataSettings | None = None) -> dict[str, Any]:
        """Write ``out_dir/model.onnx``; return the manifest fields this format adds.

        int8 with ``export.int8_search`` tries candidates against ``data`` (the validation
        set; static candidates calibrate on the run's train split, read as ``data_settings``
        say) and keeps the fastest that passes; if none does, the fp32 graph is written and
        the fields say ``precision: fp32`` and why.
        """
        precision = self.precision(cfg)
        with tempfile.TemporaryDirectory(prefix="finsight-onnx-") as scratch:
            raw = Path(scratch) / "raw.onnx"
            step(f"exporting ONNX graph ({cfg.onnx_exporter} exporter, opset {cfg.opset})")
            _torch_export(source, raw, cfg)
            graph = _load_graph(raw)
            # What the file declares: if down-conversion to an old opset fails, the exporter
            # keeps its own (18) rather than failing.
            opset = next(o.version for o in graph.model.opset_import if o.domain in ("", "ai.onnx"))
            fields: dict[str, Any] = {"opset": int(opset), "exporter": cfg.onnx_exporter,
                                      "optimized": False, "fusions": {}}
            if cfg.optimize:
                step("fusing attention, LayerNorm and GELU (ONNX Runtime transformer optimizer)")
                graph, fields["fusions"] = _optimize(raw, source.model.config)
                fields["optimized"] = True
            if precision == "fp16":
                step("converting to fp16")
                graph.convert_float_to_float16(keep_io_types=True)
            target = out_dir / self.model_file
            if precision != "int8":
                graph.save_model_to_file(str(target))
                return fields
            fp32 = Path(scratch) / "fp32.onnx"
            graph.save_model_to_file(str(fp32))
            return fields | _int8(source, fp32, target, cfg, step=step, data=data, data_settings=data_settings)

    def runner(self, model_file: Path, precision: str) -> tuple[Callable[[dict], np.ndarray], str]:
        """A function from a batch of int64 inputs to float32 logits, running the saved file."""
        import onnxruntime as ort

        # fp16 is for GPUs: validate there when one is present. int8 (MatMulInteger) is a CPU
        # kernel, and fp32 is checked where `analyze` runs it by default, on the CPU.
        available = ort.get_available_providers()
        chosen = [CUDA, CPU] if precision == "fp16" and CUDA in available else [CPU]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(model_file), options, providers=chosen)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelError(f"the exported {model_file.name} does not load in ONNX Runtime: "
                             f"{str(exc).splitlines()[0]}") from None
        names = {i.name for i in session.get_inputs()}

        def run(batch: dict[str, np.ndarray]) -> np.ndarray:
            feed = {k: v for k, v in batch.items() if k in names}
            return np.asarray(session.run([OUTPUT], feed)[0], dtype=np.float32)

        return run, session.get_providers()[0]


def _int8(source: Source, fp32: Path, target: Path, cfg: ExportSettings, *, step: Callable[[str], None],
          data: ValidationSet | None, data_settings: DataSettings | None) -> dict[str, Any]:
    """Quantize ``fp32`` into ``target``: searched when there is data to validate on, else the
    fixed recipe. A search that finds nothing writes the fp32 graph and says so."""
    if not cfg.int8_search or data is None:
        step("quantizing weights to int8 (dynamic)")
        return {"quantization": quantize.fixed_recipe(fp32, target, cfg)}
    calibration = quantize.calibration_texts(source, data, data_settings, rows=cfg.int8_calibration_rows)
    found = quantize.search(fp32, fp32.parent, source, data, calibration, cfg, step=step)
    if found.chosen is None:
        step(found.summary.reason)
        shutil.copyfile(fp32, target)
        return {"quantization": found.fields, "precision": "fp32"}
    step(f"int8: {found.summary.reason}")
    shutil.copyfile(found.chosen, target)  # the very file the search validated
    return {"quantization": found.fields}


def _torch_export(source: Source, path: Path, cfg: ExportSettings) -> None:
    """torch.onnx.export of the logits module with dynamic batch and sequence axes.

    Eager attention (on a copy; the reference keeps its own) gives the MatMul/Softmax
    pattern ONNX Runtime's attention fusion recognises; SDPA exports as a pattern it does not.
    """
    import copy

    model = copy.deepcopy(source.model)
    model.set_attn_implementation("eager")
    module = logits_module(model)
    args = source.example_inputs()
    try:
        with quiet_exporters():
            _TORCH_EXPORTERS[cfg.onnx_exporter](module, args, path, source.input_names, cfg.opset)
    except Exception as exc:  # noqa: BLE001 - torch's exporters raise many types
        other = next(name for name in _TORCH_EXPORTERS if name != cfg.onnx_exporter)
        raise ModelError(f"torch.onnx.export ({cfg.onnx_exporter} exporter) failed for {source.ref} "
                         f"at opset {cfg.opset}: {str(exc).strip().splitlines()[0]}; try "
                         f"--set export.onnx_exporter={other} or another --opset") from None
    finally:
        module.eval()  # exporters may leave a module in training mode (dropout on)


def _torchscript_exporter(module, args, path: Path, names, opset: int) -> None:
    """The TorchScript-based exporter: the graph ONNX Runtime's BERT fusion was written for
    (embedding LayerNorm fused too), exported in about a second."""
    import torch

    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {OUTPUT: {0: "batch"}}
    torch.onnx.export(module, args, str(path), input_names=names, output_names=[OUTPUT],
                      dynamic_axes=axes, opset_version=opset, dynamo=False)


def _dynamo_exporter(module, args, path: Path, names, opset: int) -> None:
    """The torch.export-based exporter (torch's default since 2.9). Left unoptimised by torch,
    because its optimiser merges the mask's two Unsqueezes and attention then does not fuse."""
    import torch

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    torch.onnx.export(module, args, str(path), input_names=names, output_names=[OUTPUT],
                      opset_version=opset, dynamo=True, optimize=False, verbose=False,
                      dynamic_shapes=tuple({0: batch, 1: sequence} for _ in args))


_TORCH_EXPORTERS = {"torchscript": _torchscript_exporter, "dynamo": _dynamo_exporter}


def _load_graph(path: Path):
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    return OnnxModel(onnx.load(str(path)))


def _optimize(path: Path, config) -> tuple[Any, dict[str, int]]:
    from onnxruntime.transformers import optimizer

    # num_heads and hidden_size from the config: 0 (auto-detect) guesses from the graph
    # and can guess wrong for small models.
    with quiet_exporters():
        graph = optimizer.optimize_model(str(path), model_type="bert",
                                         num_heads=int(config.num_attention_heads),
                                         hidden_size=int(config.hidden_size))
    fused = {name: int(n) for name, n in graph.get_fused_operator_statistics().items() if n}
    return graph, fused
