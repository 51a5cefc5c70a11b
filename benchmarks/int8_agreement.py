"""int8 vs fp32 on real fine-tuned models: label agreement and macro-F1 change on a test split.

Takes run directories written by `benchmarks/quality.py` (each `<run>/model` plus the prep dir
its manifest records) and, for each, runs `finsight export MODEL --quantize int8
--validate-data <data>/test.parquet` — the same validation gate and int8 search users get — and
prints the PyTorch (fp32) and exported macro-F1 side by side with their label agreement, every
int8 candidate the search tried and the one it chose (or fp32 when none passed).

    python benchmarks/quality.py --files AllAgree 50Agree --seeds 0 --out Q
    python benchmarks/int8_agreement.py Q/AllAgree/seed0 Q/50Agree/seed0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def export_int8(run: Path, extra: list[str]) -> dict:
    manifest = json.loads((run / "model" / "finsight.json").read_text())
    test = Path(manifest["data_dir"]) / "test.parquet"
    command = [sys.executable, "-m", "finsight", "--set", "export.validate_max_rows=100000", *extra,
               "export", str(run / "model"), "--quantize", "int8", "--validate-data", str(test),
               "--out", str(run / "export-onnx-int8"), "--json"]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    # A failed gate exits 1 but still writes the manifest with its report: read it either way.
    exported = json.loads((run / "export-onnx-int8" / "finsight.json").read_text())
    exported["exit_code"] = done.returncode
    return exported


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run dirs holding model/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    extra = [x for kv in args.overrides for x in ("--set", kv)]
    rows = []
    for run in args.runs:
        exported = export_int8(run, extra)
        out = exported["validation"]["outputs"][0]
        rows.append({"run": str(run), "rows": out["rows"], "agreement": out["agreement"],
                     "macro_f1_fp32": out["macro_f1_reference"], "macro_f1_int8": out["macro_f1_export"],
                     "size_mb": exported.get("size_mb"), "valid": exported["valid"],
                     "precision": exported["precision"],
                     "chosen": (exported.get("quantization", {}).get("search") or {}).get("chosen", "fixed recipe"),
                     "search": (exported.get("quantization", {}).get("search") or {}),
                     "vnni": exported.get("quantization", {}).get("vnni")})
    print(f"{'run':40} {'rows':>6} {'agreement':>10} {'F1 fp32':>8} {'F1 int8':>8} {'change':>8} valid  result")
    for r in rows:
        change = r["macro_f1_int8"] - r["macro_f1_fp32"]
        print(f"{r['run'][-40:]:40} {r['rows']!s:>6} {r['agreement']:>10.4f} {r['macro_f1_fp32']:>8.4f} "
              f"{r['macro_f1_int8']:>8.4f} {change:>+8.4f} {r['valid']!s:5}  {r['precision']} ({r['chosen']})")
        for c in r["search"].get("candidates", []):
            figures = (f"agreement {c['agreement']:.4f}, F1 change {c['macro_f1_change']:+.4f}, "
                       f"{c['texts_per_s']:.0f} texts/s ({c['speedup_vs_fp32']:.2f}x fp32)"
                       if "agreement" in c else f"error: {c.get('error')}")
            print(f"    {c['name']:24} {'pass' if c['passed'] else 'fail'}  {figures}")
        if r["search"]:
            print(f"    -> {r['search']['reason']}")
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
