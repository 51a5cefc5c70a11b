"""Serving through a real tritonserver (CPU) next to `finsight analyze --backend onnx`, in one run.

Both score the same Financial PhraseBank sentences with the same ONNX export (fp32, fused by
`finsight export`):

- onnx: ``analyze_files`` CSV -> CSV with the local ONNX predictor (in process);
- triton http / grpc: the same ``analyze_files`` with ``--backend triton``: raw text goes to
  the ensemble of a ``finsight triton build`` repository served by the tritonserver bundled in
  nvidia-pytriton (``--classifier-backend python``: that bundle has no onnxruntime backend),
  which tokenizes, runs onnxruntime and returns probabilities.

Throughput: texts/s of the whole file, median of interleaved rounds (the machine is shared).
Latency: one text per request, p50 / p99 over ``--latency-texts`` requests. Server and client
share this machine's cores, as they would on one serving host.

  python benchmarks/triton_speed.py                  # MiniLM (make bench-install), 1000 texts
  python benchmarks/triton_speed.py --quick
  python benchmarks/triton_speed.py --model bert-base --texts 300
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from analyze_speed import Analyze, build_bert_base, build_minilm, export, phrasebank  # noqa: E402


def latency_ms(predictor, texts: list[str]) -> dict[str, float]:
    import numpy as np

    times = []
    for text in texts:
        start = time.perf_counter()
        predictor.predict([text])
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["minilm", "bert-base"], default="minilm")
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--latency-texts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 texts, 50 latency requests, 1 round")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.latency_texts, args.rounds = 200, 50, 1

    import pandas as pd

    from finsight.config import load_settings
    from finsight.triton.repository import build_repository
    from finsight.triton.server import TritonServer

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="finsight-triton-bench-") as tmp:
        work = Path(tmp)
        model_dir = work / "model"
        model_dir = build_minilm(model_dir, None) if args.model == "minilm" else build_bert_base(model_dir)
        exported, verdict = export(model_dir, "none", work)
        repo = work / "repo"
        build_settings = load_settings(flags={"triton.repository": repo, "triton.classifier_backend": "python",
                                              "predict.force": True})
        build_repository(str(exported), build_settings)
        texts = phrasebank(args.texts)
        csv = work / "texts.csv"
        pd.DataFrame({"id": range(len(texts)), "text": texts}).to_csv(csv, index=False)
        with TritonServer(repo, load_settings()) as server:
            runners = [Analyze("finsight analyze, onnx (in process)", exported, "onnx", {}, verdict)]
            for protocol in ("http", "grpc"):
                flags = {"triton.url": server.url(protocol), "triton.protocol": protocol}
                runners.append(Analyze(f"finsight analyze, triton {protocol}", exported, "triton", flags))
            rates: dict[str, list[float]] = {r.title: [] for r in runners}
            for round_ in range(args.rounds):
                for runner in runners:
                    seconds = runner(texts, csv, work / f"out-{len(rates[runner.title])}.csv")
                    rates[runner.title].append(len(texts) / seconds)
                print(f"round {round_ + 1}: " + ", ".join(f"{t}: {r[-1]:.1f}/s" for t, r in rates.items()),
                      file=sys.stderr)
            latencies = {r.title: latency_ms(r.predictor, texts[:args.latency_texts]) for r in runners}
            reference = runners[0].labels
            agreement = {r.title: float((r.labels == reference).mean()) for r in runners}
    results = {
        "model": args.model, "texts": len(texts), "rounds": args.rounds, "export": verdict,
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "cpus": os.cpu_count(),
        "runners": [{"runner": title, "texts_per_s_median": statistics.median(r),
                     "texts_per_s_rounds": r, "latency_ms": latencies[title],
                     "label_agreement_with_onnx": agreement[title]} for title, r in rates.items()],
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print("\n| runner | texts/s (median) | per round | 1 text: p50 / p99 ms | labels = onnx |")
    print("|---|---|---|---|---|")
    for row in results["runners"]:
        per_round = ", ".join(f"{r:.1f}" for r in row["texts_per_s_rounds"])
        lat = row["latency_ms"]
        print(f"| {row['runner']} | {row['texts_per_s_median']:.1f} | {per_round} | "
              f"{lat['p50']:.1f} / {lat['p99']:.1f} | {row['label_agreement_with_onnx']:.2%} |")


if __name__ == "__main__":
    main()
