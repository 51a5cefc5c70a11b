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
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from finsight.export.source import Source, quiet_exporters

if TYPE_CHECKING:
    from finsight.config import DataSettings, ExportSettings
    from finsight.export.validate import ValidationSet

TIMING_ROWS = 128  # validation rows timed per candidate, in length-sorted batches of 32
TIE = 0.05  # speeds within 5% of the fastest passing candidate count as equal
SENSITIVITY_ROWS = 96  # validation rows each node's sensitivity is measured on


@dataclass(frozen=True)
class Candidate:
    name: str  # e.g. "dynamic_sensitive[2]"
    kind: str  # one of CANDIDATES
    fp32_nodes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.kind.split("_")[0]  # "dynamic" or "static"


@dataclass(frozen=True)
class CandidateResult:
    """One tried candidate, as the manifest's ``quantization.search.candidates`` lists it.

    A candidate the quantizer could not build has ``error`` and no figures.
    """

    name: str
    method: str
    fp32_nodes: list[str]
    options: dict[str, Any]  # the static candidates' calibration and calibration_rows
    passed: bool
    seconds: float
    error: str | None = None
    agreement: float | None = None
    disagreements: int | None = None
    macro_f1_change: float | None = None
    max_abs_diff: float | None = None
    failed_gates: list[str] = field(default_factory=list)
    texts_per_s: float = 0.0
    speedup_vs_fp32: float | None = None
    size_mb: float | None = None

    _FIGURES = ("agreement", "disagreements", "macro_f1_change", "max_abs_diff", "failed_gates",
                "texts_per_s", "speedup_vs_fp32", "size_mb")

    def as_dict(self) -> dict[str, Any]:
        record = {"name": self.name, "method": self.method, "fp32_nodes": self.fp32_nodes,
                  **self.options, "passed": self.passed}
        if self.error is not None:
            return record | {"error": self.error, "seconds": self.seconds}
        return record | {k: getattr(self, k) for k in self._FIGURES} | {"seconds": self.seconds}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "CandidateResult":
        known = {"name", "method", "fp32_nodes", "passed", "seconds", "error", *cls._FIGURES}
        return cls(options={k: v for k, v in record.items() if k not in known},
                   **{k: v for k, v in record.items() if k in known})


@dataclass(frozen=True)
class SearchSummary:
    """The manifest's ``quantization.search``: every candidate tried, and the choice."""

    fp32_texts_per_s: float
    candidates: list[CandidateResult]
    stopped: str  # why the search ended
    seconds: float
    timing: str  # how texts_per_s was measured
    chosen: str | None  # the winning candidate's name; None: the fp32 graph is the result
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"fp32_texts_per_s": self.fp32_texts_per_s,
                "candidates": [c.as_dict() for c in self.candidates], "stopped": self.stopped,
                "seconds": self.seconds, "timing": self.timing, "chosen": self.chosen,
                "reason": self.reason}

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> "SearchSummary | None":
        """The search an export's manifest records; None when int8 was not searched."""
        search = (manifest.get("quantization") or {}).get("search")
        if not search:
            return None
        return cls(**(search | {"candidates": [CandidateResult.from_dict(c) for c in search["candidates"]]}))


@dataclass(frozen=True)
class SearchResult:
    chosen: Path | None  # the int8 file that passed, or None: use fp32
    summary: SearchSummary
    fields: dict[str, Any]  # the manifest's "quantization" entry (summary.as_dict() its "search")


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


# ---------------------------------------------------------------- the search


def search(fp32: Path, scratch: Path, source: Source, data: ValidationSet, calibration: Sequence[str],
           cfg: ExportSettings, *, step: Callable[[str], None]) -> SearchResult:
    """Try candidates on ``fp32`` (the optimised float graph); the fastest that passes wins."""
    run = _Search(fp32, scratch, CachedReference(source), data, calibration, cfg, step)
    stopped = "every candidate was tried"
    for kind in cfg.int8_candidates:
        candidates = BUILDERS[kind](run)
        while (limit := run.out_of_budget()) is None and (candidate := next(candidates, None)):
            run.attempt(candidate)
        if limit is not None:
            stopped = limit
            break
    return _result(run, stopped)


class _Search:
    """One search's state: the candidates tried so far, their files, and the budget."""

    def __init__(self, fp32: Path, scratch: Path, reference: CachedReference, data: ValidationSet,
                 calibration: Sequence[str], cfg: ExportSettings, step: Callable[[str], None]):
        self.started = time.perf_counter()
        self.fp32, self.scratch, self.reference, self.data = fp32, scratch, reference, data
        self.calibration, self.cfg, self.step = calibration, cfg, step
        self.base = dynamic_options(cfg)
        self.timing = _timing_batches(reference, data.texts)
        self.fp32_rate = _rate(fp32, self.timing)
        self.tried: list[CandidateResult] = []
        self.files: dict[str, Path] = {}

    def passed(self, name: str) -> bool:
        return any(t.name == name and t.passed for t in self.tried)

    def out_of_budget(self) -> str | None:
        cfg = self.cfg
        if len(self.tried) >= cfg.int8_max_candidates:
            return f"candidate limit reached (export.int8_max_candidates={cfg.int8_max_candidates})"
        if time.perf_counter() - self.started >= cfg.int8_max_seconds:
            return f"time limit reached (export.int8_max_seconds={cfg.int8_max_seconds:g})"
        return None

    def attempt(self, candidate: Candidate) -> None:
        """Build, validate and time ``candidate``; record it, figures or error."""
        from finsight.artifacts import failed_gates
        from finsight.export.validate import compare

        t0 = time.perf_counter()
        self.step(f"int8 candidate {len(self.tried) + 1}: {candidate.name}"
                  + (f" ({len(candidate.fp32_nodes)} MatMuls in fp32)" if candidate.fp32_nodes else ""))
        path = self.scratch / f"candidate-{len(self.tried)}.onnx"
        tried = {"name": candidate.name, "method": candidate.method, "fp32_nodes": candidate.fp32_nodes,
                 "options": candidate.options}
        try:
            _build(candidate, self.fp32, path, self.base,
                   lambda: calibration_batches(self.reference, self.calibration))
            report = compare(self.reference, _session_runner(path), self.data, precision="int8",
                             provider="CPUExecutionProvider", cfg=self.cfg)
        except Exception as exc:  # noqa: BLE001 - a candidate the quantizer cannot build is skipped
            self.tried.append(CandidateResult(**tried, passed=False, seconds=_since(t0),
                                              error=str(exc).strip().splitlines()[0][:200]))
            return
        out, rate = report["outputs"][0], _rate(path, self.timing)
        self.tried.append(CandidateResult(
            **tried, passed=bool(report["passed"]), agreement=out["agreement"],
            disagreements=out["disagreements"], macro_f1_change=out["macro_f1_change"],
            max_abs_diff=out["max_abs_diff"], failed_gates=failed_gates(report),
            texts_per_s=round(rate, 1), speedup_vs_fp32=round(rate / self.fp32_rate, 3),
            size_mb=round(path.stat().st_size / 2**20, 3), seconds=_since(t0)))
        self.files[candidate.name] = path


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 2)


def _result(run: _Search, stopped: str) -> SearchResult:
    """The manifest's quantization entry for what the search found, and the file to keep."""
    passing = [t for t in run.tried if t.passed]
    rows = sum(len(b["input_ids"]) for b in run.timing)
    summary = dict(fp32_texts_per_s=round(run.fp32_rate, 1), candidates=run.tried, stopped=stopped,
                   seconds=_since(run.started),
                   timing=f"best of 3 passes over {rows} validation rows in length-sorted batches "
                          "of 32, on this CPU")
    if not passing:
        reason = (f"no int8 candidate passed the gates ({len(run.tried)} tried; {stopped}); "
                  "the fp32 graph is the result")
        none = SearchSummary(**summary, chosen=None, reason=reason)
        return SearchResult(None, none, {"method": "none", "search": none.as_dict()})
    best = _fastest(passing)
    found = SearchSummary(**summary, chosen=best.name, reason=_reason(best, passing, run.tried))
    fields = {"method": best.method, "weight_type": "int8", "fp32_nodes": best.fp32_nodes,
              **({"calibration": best.options["calibration"]} if "calibration" in best.options else {}),
              **run.base, "search": found.as_dict()}
    return SearchResult(run.files[best.name], found, fields)


def _fastest(passing: list[CandidateResult]) -> CandidateResult:
    """Fastest wins; candidates within TIE of it count as equally fast and the earlier one in
    export.int8_candidates (the simpler graph) is kept, so timing noise does not flip the choice."""
    fastest = max(t.texts_per_s for t in passing)
    return next(t for t in passing if t.texts_per_s >= fastest * (1 - TIE))


def _reason(best: CandidateResult, passing: list[CandidateResult], tried: list[CandidateResult]) -> str:
    faster_failed = [t.name for t in tried if t is not best and not t.passed and t.texts_per_s > best.texts_per_s]
    reason = (f"{best.name} is the fastest of {len(passing)} passing candidate(s) "
              f"(ties within {TIE:.0%} go to the earlier) "
              f"({best.texts_per_s:.0f} texts/s, {best.speedup_vs_fp32:.2f}x fp32; agreement "
              f"{best.agreement:.2%})")
    if faster_failed:
        reason += f"; faster but failing the gates: {', '.join(faster_failed)}"
    return reason


# ---------------------------------------------------------------- candidate kinds


def _dynamic(run: _Search) -> Iterator[Candidate]:
    yield Candidate("dynamic", "dynamic")


def _dynamic_sensitive(run: _Search) -> Iterator[Candidate]:
    """The fewest MatMuls in fp32, most sensitive first: 1, 2, 4, ... until one passes."""
    if run.passed("dynamic"):
        return  # nothing to keep in fp32: the plain dynamic graph already passes
    run.step("measuring each MatMul's int8 sensitivity on the validation rows")
    ranked = sensitivity(run.fp32, run.scratch, run.reference, run.data.texts[:SENSITIVITY_ROWS], run.base,
                         deadline=run.started + run.cfg.int8_max_seconds)
    for k in _doubling(len(ranked)):
        name = f"dynamic_sensitive[{k}]"
        yield Candidate(name, "dynamic_sensitive", [n for n, _ in ranked[:k]])
        if run.passed(name):
            return


def _dynamic_ffn_fp32(run: _Search) -> Iterator[Candidate]:
    import onnx

    yield Candidate("dynamic_ffn_fp32", "dynamic_ffn_fp32", ffn_output_matmuls(onnx.load(str(run.fp32)).graph))


def _static(calibration: str) -> Callable[[_Search], Iterator[Candidate]]:
    kind = f"static_{calibration.lower()}"

    def build(run: _Search) -> Iterator[Candidate]:
        yield Candidate(kind, kind, options={"calibration": calibration,
                                             "calibration_rows": len(run.calibration)})

    return build


# The one table of candidate kinds (export.int8_candidates names them): each yields the
# candidates to try, and may look at what was tried before it.
BUILDERS: dict[str, Callable[[_Search], Iterator[Candidate]]] = {
    "dynamic": _dynamic, "dynamic_sensitive": _dynamic_sensitive, "dynamic_ffn_fp32": _dynamic_ffn_fp32,
    "static_minmax": _static("MinMax"), "static_percentile": _static("Percentile"),
    "static_entropy": _static("Entropy"),
}
CANDIDATES = tuple(BUILDERS)


# ---------------------------------------------------------------- building candidates


def fixed_recipe(fp32: Path, target: Path, cfg: ExportSettings) -> dict[str, Any]:
    """The fixed recipe (``export.int8_search=false``): dynamic int8, int8 weights,
    activations quantized per batch at run time; returns the manifest's quantization entry."""
    import onnx

    base = dynamic_options(cfg)
    keep = ffn_output_matmuls(onnx.load(str(fp32)).graph) if cfg.int8_keep_ffn_fp32 else []
    quantize_dynamic(fp32, target, base, exclude=keep)
    return {"method": "dynamic", "weight_type": "int8", **base, "fp32_nodes": keep}


def ffn_output_matmuls(graph) -> list[str]:
    """The MatMul after each feed-forward GELU.

    GELU outputs carry a few large outliers per token; one per-tensor activation scale for
    them costs most of int8's accuracy loss in BERT (on a fine-tuned MiniLM, label agreement
    98.9% with these quantized, 99.5% with them in fp32, at about 2/3 of the int8 speed-up).
    """
    producer = {out: node for node in graph.node for out in node.output}

    def after_gelu(name: str, depth: int = 0) -> bool:
        node = producer.get(name)
        if node is None or depth > 3:
            return False
        if node.op_type in ("Gelu", "BiasGelu", "FastGelu", "Erf"):
            return True
        # Unfused GELU is x * 0.5 * (1 + erf(x / sqrt 2)): look a few Mul/Add steps back.
        return node.op_type in ("Mul", "Add") and any(after_gelu(i, depth + 1) for i in node.input)

    return [node.name for node in graph.node if node.op_type == "MatMul" and after_gelu(node.input[0])]


def dynamic_options(cfg: ExportSettings) -> dict[str, Any]:
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

    with quiet_exporters():
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

    method = candidate.options["calibration"]
    with quiet_exporters():
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


def calibration_texts(source: Source, data: ValidationSet, data_settings: DataSettings, *,
                      rows: int) -> list[str]:
    """Texts static quantization calibrates on: the run's train split, else the validation rows."""
    from finsight.export.validate import read_rows, subsample

    data_dir = source.manifest.get("data_dir")
    train = Path(data_dir) / "train.parquet" if data_dir else None
    if train is not None and train.is_file():
        return subsample(read_rows(train, data_settings, kind="train split"), rows).texts
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
