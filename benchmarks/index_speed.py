"""The sentiment index (`analyze --time-column`): aggregation speed, memory, end-to-end cost.

1. Aggregation alone. N already-scored synthetic rows (500 tickers, a year, ISO 8601 timestamps
   with offsets of six zones mixed, label/confidence/sentiment), streamed in 8192-row chunks
   as analyze streams them: parse, New York trading day with a 16:00 close, weekday calendar,
   per (ticker, day) count, shares, mean and confidence-weighted sentiment, rolling 5 and
   half-life 3. Next to it, a plain pandas groupby of the same work on the whole frame at once
   (what a quant writes after finsight: to_datetime, tz_convert, close shift, busday roll,
   groupby-agg; no windows).
2. Peak RSS of the streamed aggregation over a Parquet file of N/4 and N rows, each in a fresh
   process (reads the file chunk by chunk, as analyze does): flat with file size or not.
3. End to end: `analyze_files` on the same texts with --group-by ticker and with
   --group-by ticker --time-column published_at (+ session close, rolling), interleaved over
   rounds (median); the model is all-MiniLM-L6-v2 (bench extra) with a random head, int8 ONNX.

  python benchmarks/index_speed.py                       # 1,000,000 rows, e2e on 4000 texts
  python benchmarks/index_speed.py --rows 200000 --e2e-texts 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
OFFSETS = [(-5, "-05:00"), (-4, "-04:00"), (0, "Z"), (1, "+01:00"), (9, "+09:00"), (5.5, "+05:30")]
FLAGS = {"analyze.time_column": "published_at", "analyze.group_by": ["ticker"],
         "analyze.timezone": "America/New_York", "analyze.session_close": "16:00",
         "analyze.rolling": 5, "analyze.halflife": 3.0}


def synthetic(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    utc = np.datetime64("2024-01-01T00:00:00") + rng.integers(0, 366 * 86400, rows).astype("timedelta64[s]")
    zone = rng.integers(0, len(OFFSETS), rows)
    stamps = np.empty(rows, dtype=object)
    for i, (hours, suffix) in enumerate(OFFSETS):
        mask = zone == i
        local = utc[mask] + np.timedelta64(int(hours * 3600), "s")
        stamps[mask] = np.char.add(np.datetime_as_string(local, unit="s").astype(str), suffix)
    probs = rng.dirichlet([1, 1, 1], rows)
    labels = np.array(["negative", "neutral", "positive"])[probs.argmax(1)]
    return pd.DataFrame({"ticker": pd.array([f"T{i:03d}" for i in rng.integers(0, 500, rows)], dtype="string"),
                         "published_at": pd.array(stamps, dtype="string"), "label": labels,
                         "confidence": probs.max(1), "sentiment": probs[:, 2] - probs[:, 0],
                         "error": pd.array([None] * rows, dtype="string")})


def streamed(chunks, flags=FLAGS) -> pd.DataFrame:
    from finsight.config import load_settings
    from finsight.index import Bucketing, SentimentIndex

    opts = load_settings(flags=flags).analyze
    index = SentimentIndex(opts.group_by, Bucketing.from_settings(opts), opts)
    for chunk in chunks:
        index.update(chunk, index.assign(chunk["published_at"]))  # as analyze calls it
    return index.result()


def plain_pandas(frame: pd.DataFrame) -> pd.DataFrame:
    utc = pd.to_datetime(frame["published_at"], utc=True, format="ISO8601")
    wall = utc.dt.tz_convert("America/New_York").dt.tz_localize(None)
    day = wall.dt.normalize() + pd.to_timedelta((wall.dt.hour >= 16).astype(int), unit="D")
    bucket = np.busday_offset(day.to_numpy().astype("datetime64[D]"), 0, roll="forward")
    work = frame.assign(bucket=bucket, weighted=frame["confidence"] * frame["sentiment"],
                        **{f"is_{n}": frame["label"] == n for n in ("negative", "neutral", "positive")})
    grouped = work.groupby(["ticker", "bucket"])
    out = grouped.agg(count=("sentiment", "size"), mean_sentiment=("sentiment", "mean"),
                      share_negative=("is_negative", "mean"), share_neutral=("is_neutral", "mean"),
                      share_positive=("is_positive", "mean"), w=("weighted", "sum"), c=("confidence", "sum"))
    out["weighted_sentiment"] = out["w"] / out["c"]
    return out.reset_index()


def aggregation(rows: int) -> dict:
    frame = synthetic(rows)
    chunks = [frame.iloc[i:i + 8192] for i in range(0, rows, 8192)]
    ours, theirs = [], []
    for _ in range(3):
        t = time.perf_counter(); mine = streamed(chunks); ours.append(time.perf_counter() - t)
        t = time.perf_counter(); ref = plain_pandas(frame); theirs.append(time.perf_counter() - t)
    merged = mine.merge(ref, on=["ticker", "bucket"], suffixes=("", "_ref"))
    assert len(merged) == len(mine) == len(ref), (len(merged), len(mine), len(ref))
    assert np.allclose(merged["mean_sentiment"], merged["mean_sentiment_ref"])
    return {"rows": rows, "cells": len(mine), "finsight_s": min(ours), "pandas_s": min(theirs),
            "finsight_rows_s": rows / min(ours), "pandas_rows_s": rows / min(theirs)}


def rss_child(path: str) -> None:
    from finsight.io import iter_chunks

    chunks = iter_chunks(Path(path), format="parquet", columns=None, chunk_rows=8192)
    result = streamed(chunks)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so it would report the parent's
    # peak (the benchmark holds the 1M-row frame); VmHWM belongs to this process's own memory.
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    print(json.dumps({"cells": len(result), "peak_rss_mb": int(hwm.split()[1]) / 1024}))


def peak_rss(rows: int, work: Path) -> list[dict]:
    out = []
    for n in (rows // 4, rows):
        path = work / f"scored-{n}.parquet"
        synthetic(n, seed=1).to_parquet(path, index=False, row_group_size=65536)  # as TableWriter writes: chunk by chunk
        line = subprocess.run([sys.executable, __file__, "--rss-child", str(path)], check=True,
                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
        out.append({"rows": n, **json.loads(line)})
    return out


def end_to_end(texts: int, rounds: int, work: Path) -> dict:
    from analyze_speed import build_minilm, export, phrasebank

    from finsight.analyze import analyze_files
    from finsight.config import load_settings
    from finsight.predict import load_predictor

    model = work / "minilm"
    onnx = work / "export-onnx-int8"
    if not onnx.is_dir():
        build_minilm(model, None)
        export(model, "int8", work)
    frame = synthetic(texts, seed=2).drop(columns=["label", "confidence", "sentiment", "error"])
    frame.insert(0, "text", phrasebank(texts))
    csv = work / "news.csv"
    frame.to_csv(csv, index=False)
    base = {"predict.model": str(onnx), "predict.backend": "onnx", "analyze.group_by": ["ticker"]}
    runs = {"group-by ticker": base, "group-by ticker + index": {**base, **FLAGS}}
    predictor = load_predictor(None, load_settings(flags=base))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, flags in runs.items():
            settings = load_settings(flags={**flags, "analyze.out": str(work / "out.parquet")})
            t = time.perf_counter()
            analyze_files([csv], settings, predictor=predictor)
            times[name].append(time.perf_counter() - t)
    medians = {name: statistics.median(v) for name, v in times.items()}
    a, b = medians.values()
    return {"texts": texts, "rounds": rounds, **medians, "overhead_pct": 100 * (b - a) / a}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--e2e-texts", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="reuse a work dir (keeps the export)")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(args.rss_child)
    work = args.work or Path(tempfile.mkdtemp(prefix="index-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    agg = aggregation(args.rows)
    print(f"aggregation, {agg['rows']:,} rows -> {agg['cells']:,} (ticker, day) cells: finsight streamed "
          f"{agg['finsight_s']:.2f} s ({agg['finsight_rows_s']:,.0f} rows/s); plain pandas groupby, whole frame "
          f"{agg['pandas_s']:.2f} s ({agg['pandas_rows_s']:,.0f} rows/s)", flush=True)
    for row in peak_rss(args.rows, work):
        print(f"peak RSS, {row['rows']:,} rows from Parquet: {row['peak_rss_mb']:.0f} MB", flush=True)
    if args.e2e_texts:
        e2e = end_to_end(args.e2e_texts, args.rounds, work)
        print(f"end to end, {e2e['texts']:,} texts, median of {e2e['rounds']}: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in e2e.items() if k.startswith("group"))
              + f"; the index adds {e2e['overhead_pct']:+.1f}%", flush=True)


if __name__ == "__main__":
    main()
