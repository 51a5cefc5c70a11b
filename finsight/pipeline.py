"""`finsight pipeline run`: the whole lifecycle from one config, resumable.

Stages run in order and each calls the library function its own command calls. A stage is
skipped when its fingerprint (its config sections, the hashes of its input files and the
fingerprints of the stages it reads from) equals the one recorded at its last success and its
outputs are still there, so a second run skips everything and changing ``train.max_epochs``
re-runs train and every stage after it. A failing stage stops the run naming the stage; the
stages before it keep their outputs and records, so the next run continues from the failure.
State lives in ``<workdir>/pipeline/state.json``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from finsight.errors import ConfigError, FinsightError
from finsight.io import read_json

if TYPE_CHECKING:
    from finsight.config import Settings

STATE_FILE = "state.json"


@dataclass
class Context:
    """What the stages share: settings, and each finished stage's outputs."""

    settings: Settings
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def workdir(self) -> Path:
        return Path(self.settings.workdir)

    def path(self, stage: str, key: str) -> Path:
        return Path(self.outputs[stage][key])


@dataclass(frozen=True)
class Stage:
    name: str
    keys: tuple[str, ...]  # config sections or dotted keys whose values the stage depends on
    needs: tuple[str, ...]  # stages whose outputs it reads
    run: Callable[[Context], dict[str, Any]]  # returns {"outputs": {...}, "summary": {...}}
    # One line from a summary (a fresh one or the one recorded when the stage last ran).
    describe: Callable[[dict[str, Any]], str] = lambda summary: ", ".join(f"{k} {v}" for k, v in summary.items())
    inputs: Callable[[Context], list[Path]] = lambda ctx: []  # files whose contents it depends on
    enabled: Callable[[Settings], bool | str] = lambda settings: True  # a string: why it is off


@dataclass
class StageReport:
    name: str
    status: str  # ran | skipped | failed | disabled | not run
    reason: str = ""
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """The stage's result in one line; why it did not run when it did not."""
        if self.status in ("failed", "not run", "disabled"):
            return self.reason
        return _stage(self.name).describe(self.summary)


@dataclass
class PipelineReport:
    workdir: Path
    stages: list[StageReport]
    seconds: float = 0.0

    @property
    def failed(self) -> StageReport | None:
        return next((s for s in self.stages if s.status == "failed"), None)

    def as_dict(self) -> dict[str, Any]:
        return {"workdir": str(self.workdir.resolve()), "seconds": round(self.seconds, 2),
                "ok": self.failed is None,
                "stages": [{"name": s.name, "status": s.status, "reason": s.reason,
                            "seconds": round(s.seconds, 2), "summary": s.summary, "outputs": s.outputs}
                           for s in self.stages]}


# ---------------------------------------------------------------- the stages


def _prep(ctx: Context) -> dict[str, Any]:
    from finsight.data.prep import prepare

    data = ctx.settings.data.model_copy(update={"out": ctx.workdir / "data" / ctx.settings.pipeline.name})
    result = prepare(_inputs(ctx), data, workdir=ctx.workdir, max_length=ctx.settings.model.max_length)
    return {"outputs": {"data_dir": str(result.out)},
            "summary": {"rows_in": result.rows_in, "rows_out": result.rows_out, "splits": result.splits}}


def _train(ctx: Context) -> dict[str, Any]:
    from finsight.train import fit

    out = ctx.workdir / "runs" / ctx.settings.pipeline.name
    if out.exists():
        shutil.rmtree(out)  # this pipeline's own previous run (checked in _check_owned)
    settings = _with(ctx.settings, {"train.out": out, "train.run_name": ctx.settings.pipeline.name})
    result = fit(ctx.path("prep", "data_dir"), settings)
    return {"outputs": {"run_dir": str(result.out), "model_dir": str(result.model_dir)},
            "summary": {"best_epoch": result.best_epoch,
                        **{f"val_{k}": round(float(v), 4) for k, v in result.best_val.items()},
                        "mlflow_run_id": result.mlflow_run_id}}


def _evaluate(ctx: Context) -> dict[str, Any]:
    from finsight.train import evaluate

    out = ctx.workdir / "eval" / f"{ctx.settings.pipeline.name}-test"
    result = evaluate(ctx.path("train", "model_dir"), ctx.settings, data=ctx.path("prep", "data_dir"),
                      split="test", out=out)
    return {"outputs": {"eval_dir": str(result.out)},
            "summary": {"accuracy": round(result.accuracy, 4), "macro_f1": round(result.macro_f1, 4),
                        "rows": result.rows}}


def _export(ctx: Context) -> dict[str, Any]:
    from finsight.export import export_model

    outputs, summary = {}, {}
    for precision in ctx.settings.pipeline.export_precisions:
        update = {"export.format": "onnx", "export.out": None,
                  "export.quantize": "int8" if precision == "int8" else "none",
                  "export.fp16": precision == "fp16"}
        result = export_model(ctx.path("train", "model_dir"), _with(ctx.settings, update))
        outputs[f"onnx_{precision}"] = str(result.out)
        summary[precision] = {"valid": result.valid, "size_mb": result.size_mb,
                              "agreement": result.agreement, "max_abs_diff": result.max_abs_diff}
    return {"outputs": outputs, "summary": summary}


def _register(ctx: Context) -> dict[str, Any]:
    from finsight.publish import register_model

    exports = ctx.outputs["export"]
    preferred = next((exports[f"onnx_{p}"] for p in ("int8", "fp32", "fp16") if f"onnx_{p}" in exports), None)
    if preferred is None:
        raise ConfigError("the register stage needs an ONNX export: add fp32 or int8 to "
                          "pipeline.export_precisions")
    alias = ctx.settings.pipeline.alias
    created = register_model(preferred, ctx.settings, aliases=[alias] if alias else [])
    return {"outputs": {"source": created.source},
            "summary": {"name": created.name, "version": created.version, "aliases": created.aliases,
                        "model_uri": created.model_uri, "precision": created.precision,
                        "tracking_uri": created.tracking_uri}}


def _triton(ctx: Context) -> dict[str, Any]:
    from finsight.triton.repository import build_repository

    built = build_repository(str(ctx.path("train", "model_dir")), ctx.settings)
    return {"outputs": {"repository": str(built.out)},
            "summary": {"models": built.models, "classifier_backend": built.classifier_backend,
                        "source_precision": built.source_precision}}


def _analyze(ctx: Context) -> dict[str, Any]:
    from finsight.analyze import analyze_files

    outputs, summary = {}, {}
    for path in ctx.settings.pipeline.analyze_inputs:
        settings = _with(ctx.settings, {"predict.model": str(ctx.path("train", "model_dir")),
                                        "analyze.out": None})
        result = analyze_files([path], settings)
        outputs[Path(path).name] = str(Path(result.outputs["scores"]).resolve())
        summary[Path(path).name] = {"rows": result.rows, "errors": result.errors,
                                    "backend": result.backend, "label_counts": result.label_counts,
                                    "mean_sentiment": result.mean_sentiment}
    return {"outputs": outputs, "summary": summary}


def _inputs(ctx: Context) -> list[Path]:
    inputs = [Path(p) for p in ctx.settings.pipeline.inputs]
    if not inputs:
        raise ConfigError("pipeline.inputs is empty: set the labelled files prep reads "
                          "(e.g. --set 'pipeline.inputs=[examples/headlines.csv]')")
    return inputs


# ---------------------------------------------------------------- one line per stage


def _describe_prep(s: dict[str, Any]) -> str:
    return f"{s['rows_in']} rows in, {s['rows_out']} out; " + ", ".join(
        f"{name} {rows}" for name, rows in s["splits"].items())


def _describe_train(s: dict[str, Any]) -> str:
    return (f"best epoch {s['best_epoch']}: val accuracy {s.get('val_accuracy', 0):.4f}, "
            f"macro-F1 {s.get('val_macro_f1', 0):.4f}")


def _describe_evaluate(s: dict[str, Any]) -> str:
    return f"test accuracy {s['accuracy']:.4f}, macro-F1 {s['macro_f1']:.4f} ({s['rows']} rows)"


def _describe_export(s: dict[str, Any]) -> str:
    return "; ".join(f"{precision} {'valid' if e['valid'] else 'INVALID'} {e['size_mb']:.1f} MB, "
                     f"agreement {e['agreement']:.2%}" for precision, e in s.items())


def _describe_register(s: dict[str, Any]) -> str:
    aliases = "".join(f" @{alias}" for alias in s["aliases"])
    return f"{s['name']} version {s['version']}{aliases} ({s['precision']})"


def _describe_triton(s: dict[str, Any]) -> str:
    return f"{len(s['models'])} models ({s['classifier_backend']} classifier, {s['source_precision']} export)"


def _describe_analyze(s: dict[str, Any]) -> str:
    return "; ".join(f"{name}: {a['rows']} rows ({a['backend']}), mean sentiment "
                     f"{a['mean_sentiment'] if a['mean_sentiment'] is None else round(a['mean_sentiment'], 4)}"
                     for name, a in s.items())


STAGES: list[Stage] = [
    Stage("prep", ("data", "pipeline.name", "pipeline.inputs"), (), _prep, _describe_prep, inputs=_inputs),
    Stage("train", ("model", "train"), ("prep",), _train, _describe_train),
    Stage("evaluate", ("predict",), ("train", "prep"), _evaluate, _describe_evaluate),
    Stage("export", ("export", "pipeline.export_precisions"), ("train",), _export, _describe_export),
    Stage("register", ("registry", "pipeline.alias"), ("export",), _register, _describe_register),
    Stage("triton", ("triton",), ("export",), _triton, _describe_triton),
    Stage("analyze", ("predict", "analyze", "pipeline.analyze_inputs"), ("train", "export"), _analyze,
          _describe_analyze, inputs=lambda ctx: [Path(p) for p in ctx.settings.pipeline.analyze_inputs],
          enabled=lambda settings: bool(settings.pipeline.analyze_inputs) or "no pipeline.analyze_inputs"),
]


def stage_names() -> list[str]:
    return [stage.name for stage in STAGES]


def _stage(name: str) -> Stage:
    return next(stage for stage in STAGES if stage.name == name)


# ---------------------------------------------------------------- running


def run_pipeline(settings: Settings, *, start: str | None = None, stop: str | None = None,
                 on_stage: Callable[[StageReport], None] | None = None) -> PipelineReport:
    """Run the stages in order (``start``..``stop``); return the report, failures included.

    ``start`` re-runs that stage and every later one even when unchanged.
    """
    names = stage_names()
    for given, flag in ((start, "--from"), (stop, "--to")):
        if given is not None and given not in names:
            raise ConfigError(f"{flag} {given}: no such stage; stages are {', '.join(names)}")
    first = names.index(start) if start else 0
    last = names.index(stop) if stop else len(names) - 1
    ctx = Context(settings)
    state_path = Path(settings.workdir) / "pipeline" / STATE_FILE
    state = read_json(state_path, strict=False)  # a damaged state file only costs a full re-run
    fingerprints: dict[str, str] = {}
    ran: set[str] = set()  # stages that ran in this invocation: what reads them re-runs too
    reports: list[StageReport] = []
    started = time.perf_counter()
    for index, stage in enumerate(STAGES):
        if index > last:
            break
        upstream = sorted(ran.intersection(stage.needs))
        report = _run_stage(stage, ctx, state, fingerprints, forced=start is not None and index >= first,
                            upstream=upstream)
        if report.status == "ran":
            ran.add(stage.name)
        reports.append(report)
        if on_stage is not None:
            on_stage(report)
        if report.status in ("ran", "failed"):
            _write_state(state_path, state)
        if report.status == "failed":
            reports.extend(StageReport(s.name, "not run", "an earlier stage failed")
                           for s in STAGES[index + 1:last + 1])
            break
    return PipelineReport(Path(settings.workdir), reports, time.perf_counter() - started)


def _run_stage(stage: Stage, ctx: Context, state: dict, fingerprints: dict[str, str], *,
               forced: bool, upstream: list[str]) -> StageReport:
    if stage.name in ctx.settings.pipeline.skip:
        return StageReport(stage.name, "disabled", "in pipeline.skip")
    enabled = stage.enabled(ctx.settings)
    if enabled is not True:
        return StageReport(stage.name, "disabled", str(enabled))
    record = state.get(stage.name, {})
    fingerprint = _fingerprint(stage, ctx, fingerprints)
    fingerprints[stage.name] = fingerprint
    unchanged = record.get("fingerprint") == fingerprint and record.get("status") == "ok"
    present = unchanged and all(Path(p).exists() for p in record.get("outputs", {}).values())
    if present and not forced and not upstream:
        ctx.outputs[stage.name] = record["outputs"]
        return StageReport(stage.name, "skipped", f"unchanged since {record['finished']} "
                           "(same inputs and config)", summary=record.get("summary", {}),
                           outputs=record["outputs"])
    reason = _why(record, unchanged, present, forced=forced, upstream=upstream)
    began = time.perf_counter()
    try:
        _check_owned(stage, ctx, record)
        result = stage.run(ctx)
    except FinsightError as exc:
        state[stage.name] = {"status": "failed", "fingerprint": fingerprint, "error": str(exc),
                             "finished": _now()}
        return StageReport(stage.name, "failed", str(exc), time.perf_counter() - began)
    seconds = time.perf_counter() - began
    ctx.outputs[stage.name] = result["outputs"]
    state[stage.name] = {"status": "ok", "fingerprint": fingerprint, "finished": _now(),
                         "seconds": round(seconds, 2), "outputs": result["outputs"],
                         "summary": result["summary"]}
    return StageReport(stage.name, "ran", reason, seconds, result["summary"], result["outputs"])


def _check_owned(stage: Stage, ctx: Context, record: dict) -> None:
    """train replaces its run dir: only one this pipeline wrote (a user's run is never deleted)."""
    if stage.name != "train":
        return
    out = ctx.workdir / "runs" / ctx.settings.pipeline.name
    if out.exists() and not record:
        raise ConfigError(f"{out} exists but this pipeline did not write it; set another "
                          "pipeline.name or workdir, or remove it")


def _why(record: dict, unchanged: bool, present: bool, *, forced: bool, upstream: list[str]) -> str:
    if forced and present:
        return "re-run from --from"
    if upstream and present:
        return f"{' and '.join(upstream)} re-ran"
    if not record:
        return "first run"
    if record.get("status") == "failed":
        return "failed last time"
    if unchanged and not present:
        return "its outputs are missing"
    return "inputs or config changed"


def _fingerprint(stage: Stage, ctx: Context, upstream: dict[str, str]) -> str:
    from finsight.config import settings_as_dict
    from finsight.io import sha256_file

    values = settings_as_dict(ctx.settings)
    digest = hashlib.sha256()
    config = {}
    for key in stage.keys:
        section, _, name = key.partition(".")
        config[key] = values[section][name] if name else values[section]
    payload = {"stage": stage.name, "config": config,
               "needs": {name: upstream.get(name) for name in stage.needs}}
    digest.update(json.dumps(payload, sort_keys=True, default=str).encode())
    try:
        files = stage.inputs(ctx)
    except FinsightError:
        files = []  # the stage itself reports the problem when it runs
    for path in files:
        digest.update(f"{path}\0{sha256_file(path) if Path(path).is_file() else 'missing'}\n".encode())
    return digest.hexdigest()


def _write_state(path: Path, state: dict[str, Any]) -> None:
    from finsight.io import atomic_write_json

    atomic_write_json(path, state)


def _with(settings: Settings, updates: dict[str, Any]) -> Settings:
    """A copy of ``settings`` with dotted keys replaced (validated like any other value)."""
    copy = settings.model_copy(deep=True)
    for dotted, value in updates.items():
        section, _, key = dotted.partition(".")
        setattr(getattr(copy, section), key, value)
    return copy


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
