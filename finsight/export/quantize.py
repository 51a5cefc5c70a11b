"""Accuracy-aware int8: search for the fastest int8 graph that passes the export gates.

One fixed int8 recipe passes or fails its gate by luck: whether a fine-tuned model's
activations have the outliers that one per-tensor scale cannot hold. The search here tries
candidates in order (Intel Neural Compressor's accuracy-driven loop, on ONNX Runtime's own
quantizers), validates each on the validation rows with the same gates as the final artifact
(:func:`finsight.export.validate.compare`), times each on this CPU, and keeps the fastest that
passes:

- ``dynamic``: every MatMul/Attention int8, activations quantized per batch at run time;
- ``dynamic_sensitive``: the same with the fewest MatMuls kept in fp32, chosen by measured
  sensitivity (each node quantized alone, its effect on the logits on validation rows), 1, 2,
  4, ... nodes until the gate holds;
- ``dynamic_ffn_fp32``: the former fixed recipe, the MatMul after each GELU kept in fp32;
- ``static_minmax`` / ``static_percentile`` / ``static_entropy``: QDQ with activation scales
  calibrated on training texts (the run's train split, else the validation rows).

It is bounded by ``export.int8_max_candidates`` and ``export.int8_max_seconds``; if no
candidate passes, the fp32 graph is the result and the manifest says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from finsight.export.source import Source

CANDIDATES = ("dynamic", "dynamic_sensitive", "dynamic_ffn_fp32", "static_minmax",
              "static_percentile", "static_entropy")
_CALIBRATION = {"static_minmax": "MinMax", "static_percentile": "Percentile", "static_entropy": "Entropy"}
TIMING_ROWS = 128  # validation rows timed per candidate, in length-sorted batches of 32
TIE = 0.05  # speeds within 5% of the fastest passing candidate count as equal
SENSITIVITY_ROWS = 96  # validation rows each node's sensitivity is measured on


@dataclass
class Candidate:
    name: str  # e.g. "dynamic_sensitive[2]"
    kind: str  # one of CANDIDATES
    fp32_nodes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult:
    chosen: Path | None  # the int8 file that passed, or None: use fp32
    fields: dict[str, Any]  # the manifest's "quantization" entry


class CachedReference:
    """The source model with its tokenizations and reference logits memoised: every candidate
    is compared on the same batches, so PyTorch runs each batch once."""

    def __init__(self, source: Source):
        self.source = source
        self.labels = source.labels
        self._encoded: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
        self._logits: dict[tuple, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        key = tuple(texts)
        if key not in self._encoded:
            self._encoded[key] = self.source.encode(texts)
        return self._encoded[key]

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        ids = batch["input_ids"]
        key = (ids.shape, ids.tobytes(), batch["attention_mask"].tobytes())
        if key not in self._logits:
            self._logits[key] = self.source.logits(batch)
        return self._logits[key]


def search(fp32: Path, scratch: Path, source: Source, data, calibration: Sequence[str], cfg, *,
           step: Callable[[str], None]) -> SearchResult:
    """Try candidates on ``fp32`` (the optimised float graph); the fastest that passes wins."""
    from finsight.artifacts import failed_gates
    from finsight.export.validate import compare

    started = time.perf_counter()
    reference = CachedReference(source)
    timing = _timing_batches(reference, data.texts)
    base = dynamic_options(cfg)
    fp32_rate = _rate(fp32, timing)
    tried: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    stopped = "every candidate was tried"

    def out_of_budget() -> str | None:
        if len(tried) >= cfg.int8_max_candidates:
            return f"candidate limit reached (export.int8_max_candidates={cfg.int8_max_candidates})"
        if time.perf_counter() - started >= cfg.int8_max_seconds:
            return f"time limit reached (export.int8_max_seconds={cfg.int8_max_seconds:g})"
        return None

    def attempt(candidate: Candidate) -> bool:
        t0 = time.perf_counter()
        step(f"int8 candidate {len(tried) + 1}: {candidate.name}"
             + (f" ({len(candidate.fp32_nodes)} MatMuls in fp32)" if candidate.fp32_nodes else ""))
        path = scratch / f"candidate-{len(tried)}.onnx"
        record: dict[str, Any] = {"name": candidate.name, "method": candidate.kind.split("_")[0],
                                  "fp32_nodes": candidate.fp32_nodes, **candidate.options}
        try:
            _build(candidate, fp32, path, base, lambda: calibration_batches(reference, calibration))
            run = _session_runner(path)
            report = compare(reference, run, data, precision="int8", provider="CPUExecutionProvider", cfg=cfg)
        except Exception as exc:  # noqa: BLE001 - a candidate the quantizer cannot build is skipped
            record |= {"passed": False, "error": str(exc).strip().splitlines()[0][:200],
                       "seconds": round(time.perf_counter() - t0, 2)}
            tried.append(record)
            return False
        out = report["outputs"][0]
        rate = _rate(path, timing)
        record |= {"passed": report["passed"], "agreement": out["agreement"],
                   "disagreements": out["disagreements"], "macro_f1_change": out["macro_f1_change"],
                   "max_abs_diff": out["max_abs_diff"], "failed_gates": failed_gates(report),
                   "texts_per_s": round(rate, 1), "speedup_vs_fp32": round(rate / fp32_rate, 3),
                   "size_mb": round(path.stat().st_size / 2**20, 3),
                   "seconds": round(time.perf_counter() - t0, 2)}
        tried.append(record)
        files[candidate.name] = path
        return bool(report["passed"])

    for kind in cfg.int8_candidates:
        if (stopped_by := out_of_budget()) is not None:
            stopped = stopped_by
            break
        if kind == "dynamic_sensitive":
            if any(t["name"] == "dynamic" and t["passed"] for t in tried):
                continue  # nothing to keep in fp32: the plain dynamic graph already passes
            step("measuring each MatMul's int8 sensitivity on the validation rows")
            ranked = sensitivity(fp32, scratch, reference, data.texts[:SENSITIVITY_ROWS], base,
                                 deadline=started + cfg.int8_max_seconds)
            for k in _doubling(len(ranked)):
                if (stopped_by := out_of_budget()) is not None:
                    stopped = stopped_by
                    break
                if attempt(Candidate(f"dynamic_sensitive[{k}]", kind, [n for n, _ in ranked[:k]])):
                    break
        elif kind == "dynamic":
            attempt(Candidate(kind, kind))
        elif kind == "dynamic_ffn_fp32":
            import onnx

            from finsight.export.onnx import ffn_output_matmuls

            attempt(Candidate(kind, kind, ffn_output_matmuls(onnx.load(str(fp32)).graph)))
        else:
            attempt(Candidate(kind, kind, options={"calibration": _CALIBRATION[kind],
                                                   "calibration_rows": len(calibration)}))
    passing = [t for t in tried if t["passed"]]
    summary = {"fp32_texts_per_s": round(fp32_rate, 1), "candidates": tried, "stopped": stopped,
               "seconds": round(time.perf_counter() - started, 2),
               "timing": f"best of 3 passes over {sum(len(b['input_ids']) for b in timing)} "
                         "validation rows in length-sorted batches of 32, on this CPU"}
    if not passing:
        summary |= {"chosen": None,
                    "reason": f"no int8 candidate passed the gates ({len(tried)} tried; {stopped}); "
                              "the fp32 graph is the result"}
        return SearchResult(None, {"method": "none", "search": summary})
    # Fastest wins; candidates within TIE of it count as equally fast and the earlier one in
    # export.int8_candidates (the simpler graph) is kept, so timing noise does not flip the choice.
    fastest = max(t["texts_per_s"] for t in passing)
    best = next(t for t in passing if t["texts_per_s"] >= fastest * (1 - TIE))
    others = [t for t in tried if t is not best]
    faster_failed = [t["name"] for t in others if not t["passed"] and t.get("texts_per_s", 0) > best["texts_per_s"]]
    reason = (f"{best['name']} is the fastest of {len(passing)} passing candidate(s) "
              f"(ties within {TIE:.0%} go to the earlier) "
              f"({best['texts_per_s']:.0f} texts/s, {best['speedup_vs_fp32']:.2f}x fp32; agreement "
              f"{best['agreement']:.2%})")
    if faster_failed:
        reason += f"; faster but failing the gates: {', '.join(faster_failed)}"
    summary |= {"chosen": best["name"], "reason": reason}
    fields = {"method": best["method"], "weight_type": "int8", "fp32_nodes": best["fp32_nodes"],
              **({"calibration": best["calibration"]} if "calibration" in best else {}),
              "per_channel": base["per_channel"], "reduce_range": base["reduce_range"],
              "vnni": base["vnni"], "search": summary}
    return SearchResult(files[best["name"]], fields)


# ---------------------------------------------------------------- building candidates


def dynamic_options(cfg) -> dict[str, Any]:
    """Weight options shared by every candidate.

    Without VNNI, x86 int8 kernels multiply u8 activations by s8 weights in 16 bits and can
    saturate; 7-bit weights (reduce_range) avoid it at a little precision.
    """
    from finsight.export.validate import cpu_features

    vnni = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu_features()))
    reduce_range = (not vnni) if cfg.int8_reduce_range is None else cfg.int8_reduce_range
    return {"per_channel": cfg.int8_per_channel, "reduce_range": reduce_range, "vnni": vnni}


def quantize_dynamic(fp32: Path, target: Path, base: dict[str, Any], *, exclude: Sequence[str] = (),
                     only: Sequence[str] | None = None) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic as ort_quantize_dynamic

    from finsight.export.onnx import _quiet

    with _quiet():
        # ONNX shape inference cannot type the outputs of fused contrib ops (Attention,
        # EmbedLayerNormalization); everything in this graph is float32 at this point.
        ort_quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8,
                             per_channel=base["per_channel"], reduce_range=base["reduce_range"],
                             nodes_to_exclude=list(exclude), nodes_to_quantize=list(only or []),
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _build(candidate: Candidate, fp32: Path, target: Path, base: dict[str, Any],
           calibration: Callable[[], Any]) -> None:
    if candidate.kind.startswith("dynamic"):
        quantize_dynamic(fp32, target, base, exclude=candidate.fp32_nodes)
        return
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from finsight.export.onnx import _quiet

    method = candidate.options["calibration"]
    with _quiet():
        # QDQ, u8 activations / s8 weights: ORT's recommended CPU format. Only MatMuls: the
        # fused contrib ops (Attention, SkipLayerNormalization) have no QDQ form.
        quantize_static(str(_typed(fp32)), str(target), calibration(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul"], per_channel=base["per_channel"],
                        reduce_range=base["reduce_range"], activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=candidate.fp32_nodes,
                        calibrate_method=getattr(CalibrationMethod, method),
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _typed(fp32: Path) -> Path:
    """``fp32`` with every tensor typed: calibrators only see tensors that have a value_info,
    and ONNX's own shape inference cannot type the fused contrib ops' outputs (ORT's symbolic
    inference can). Written once beside ``fp32``."""
    typed = fp32.with_name(f"{fp32.stem}-typed.onnx")
    if not typed.is_file():
        import onnx
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(fp32)), auto_merge=True), str(typed))
    return typed


def calibration_batches(reference: CachedReference, texts: Sequence[str]):
    """An ONNX Runtime calibration reader over ``texts``: batches of 32 rows, all padded to one
    width, because the histogram calibrators stack every batch's activations into one array."""
    from onnxruntime.quantization import CalibrationDataReader

    rows = len(texts) - len(texts) % 32 if len(texts) >= 32 else len(texts)
    encoded = reference.source.encode(list(texts[:rows]))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter([{k: v[i:i + 32] for k, v in encoded.items()}
                                  for i in range(0, rows, 32)])

        def get_next(self):
            return next(self._batches, None)

    return Reader()


def calibration_texts(source: Source, data, settings, rows: int) -> list[str]:
    """Texts static quantization calibrates on: the run's train split, else the validation rows."""
    from finsight.export.validate import _read_file, _subsample

    data_dir = source.manifest.get("data_dir")
    train = Path(data_dir) / "train.parquet" if data_dir else None
    if train is not None and train.is_file():
        return _subsample(_read_file(train, settings, kind="train split"), rows).texts
    return list(data.texts[:rows])


# ---------------------------------------------------------------- measuring


def quantizable_nodes(path: Path) -> list[str]:
    """MatMuls with a constant weight and fused Attention nodes: what dynamic int8 quantizes."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {init.name for init in graph.initializer}
    return [node.name for node in graph.node
            if (node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in constants)
            or node.op_type == "Attention"]


def sensitivity(fp32: Path, scratch: Path, reference: CachedReference, texts: Sequence[str],
                base: dict[str, Any], *, deadline: float) -> list[tuple[str, float]]:
    """Each quantizable node's damage when it alone is int8: label flips, then mean |logit
    change| against PyTorch on ``texts``; most damaging first. Nodes not measured before the
    deadline rank last (score 0)."""
    batches = [reference.encode(texts[i:i + 32]) for i in range(0, len(texts), 32)]
    expected = [reference.logits(b) for b in batches]
    scores: dict[str, float] = {}
    target = scratch / "sensitivity.onnx"
    for name in quantizable_nodes(fp32):
        if time.perf_counter() >= deadline:
            scores.setdefault(name, 0.0)
            continue
        quantize_dynamic(fp32, target, base, only=[name])
        run = _session_runner(target)
        flips, diff = 0, 0.0
        for batch, ref in zip(batches, expected):
            got = run(batch)
            flips += int((got.argmax(1) != ref.argmax(1)).sum())
            diff += float(np.abs(got - ref).max(axis=1).sum())
        scores[name] = flips + diff / max(1, len(texts))  # a flip outweighs any mean change
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def _doubling(n: int) -> list[int]:
    """1, 2, 4, ... up to half the nodes (beyond that int8 buys little)."""
    ks, k = [], 1
    while k <= max(1, n // 2):
        ks.append(k)
        k *= 2
    return ks


def _session(path: Path):
    import onnxruntime as ort

    from finsight.predict.onnx_backend import session_options

    return ort.InferenceSession(str(path), session_options(0), providers=["CPUExecutionProvider"])


def _session_runner(path: Path) -> Callable[[dict], np.ndarray]:
    session = _session(path)
    names = {i.name for i in session.get_inputs()}

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(session.run(["logits"], {k: v for k, v in batch.items() if k in names})[0],
                          dtype=np.float32)

    return run


def _timing_batches(reference: CachedReference, texts: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """Length-sorted batches of 32 from the first TIMING_ROWS rows, as `analyze` batches them."""
    chosen = sorted(texts[:TIMING_ROWS], key=len)
    return [reference.source.encode(chosen[i:i + 32]) for i in range(0, len(chosen), 32)]


def _rate(path: Path, batches: list[dict[str, np.ndarray]], repeats: int = 3) -> float:
    """Texts/s of ``path`` on ``batches``: the best of ``repeats`` passes after one warm-up."""
    session = _session(path)
    names = {i.name for i in session.get_inputs()}
    feeds = [{k: v for k, v in b.items() if k in names} for b in batches]
    rows = sum(len(b["input_ids"]) for b in batches)
    for feed in feeds:
        session.run(["logits"], feed)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for feed in feeds:
            session.run(["logits"], feed)
        best = min(best, time.perf_counter() - t0)
    return rows / best
