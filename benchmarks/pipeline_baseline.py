"""The whole-process baseline: what a user writes today with transformers, file in -> file out.

    python benchmarks/pipeline_baseline.py MODEL_DIR IN.csv OUT.csv [--batch-size 32] [--max-length 64]

Reads the ``text`` column, runs ``transformers.pipeline("text-classification")`` with the given
batch size and truncation length, and writes ``label`` and ``score`` per row next to the id.
`benchmarks/analyze_speed.py --whole-process` times this script against `finsight analyze`.
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pandas as pd
    from transformers import pipeline

    frame = pd.read_csv(args.input)
    pipe = pipeline("text-classification", model=args.model, tokenizer=args.model, device=-1)
    results = pipe(frame["text"].astype(str).tolist(), batch_size=args.batch_size, truncation=True,
                   max_length=args.max_length)
    out = frame.drop(columns=["text"])
    out["label"] = [r["label"] for r in results]
    out["score"] = [r["score"] for r in results]
    out.to_csv(args.output, index=False)


if __name__ == "__main__":
    main()
