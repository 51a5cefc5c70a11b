"""Where the time goes in `finsight analyze` on a GPU (FinBERT-shaped bert-base, fp16).

For a few chunk/batch sizes: tokenization alone, the model alone (pre-tokenized), and the
end-to-end CSV -> CSV run; then a cProfile of the last end-to-end run.

    python benchmarks/analyze_gpu_breakdown.py 200000        # on a CUDA machine
    DEV=cpu WARM=8 python benchmarks/analyze_gpu_breakdown.py 64   # smoke run on a CPU
"""
import cProfile, io, os, pstats, sys, time, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import analyze_speed as bench
import pandas as pd
work = Path(tempfile.mkdtemp())
model = bench.build_bert_base(work / "bert")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
texts = bench.phrasebank(n)
csv = work / "in.csv"
pd.DataFrame({"id": range(n), "text": texts}).to_csv(csv, index=False)
from finsight.config import load_settings
from finsight.predict import load_predictor
from finsight.analyze import analyze_files
for chunk, bs in [(8192, 1024), (32768, 1024), (32768, 4096)]:
    s = load_settings(flags={"analyze.out": work / "o.csv", "analyze.chunk_rows": chunk, "predict.batch_size": bs,
                             "predict.device": os.environ.get("DEV", "cuda"), "predict.backend": "torch"})
    p = load_predictor(str(model), s, backend="torch")
    p.predict(texts[:int(os.environ.get("WARM", 20000))])
    t = time.perf_counter(); enc = p.encode(texts); tk = time.perf_counter() - t
    t = time.perf_counter(); p.predict_encoded(enc); mo = time.perf_counter() - t
    t = time.perf_counter(); analyze_files([csv], s, predictor=p); e2e = time.perf_counter() - t
    print(f"chunk {chunk} batch {bs}: tokenize {n/tk:,.0f}/s  model-only {n/mo:,.0f}/s  end-to-end {n/e2e:,.0f}/s", flush=True)
pr = cProfile.Profile(); pr.enable(); analyze_files([csv], s, predictor=p); pr.disable()
out = io.StringIO(); pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(25); print(out.getvalue()[:6000])
