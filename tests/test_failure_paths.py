"""A new user's first hour: what each failure looks like, grouped by the way it fails.

Global options anywhere; hints that work when typed as printed (placeholders filled in); a
model that is not there offline; outputs that cannot be written; inputs that are not text
tables; missing and empty texts; two runs at once; SIGTERM; and output a user can read.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from finsight.labels import LABELS


def _fill(hint: str, **values: str) -> list[str]:
    """A printed hint as argv, its upper-case placeholders replaced."""
    for name, value in values.items():
        hint = hint.replace(name, value)
    return shlex.split(hint)


def _labelled_csv(path: Path, labels=("negative", "neutral", "positive"), column="label") -> Path:
    rows = [{"text": f"Company {i} reports {label} quarter number {i}", column: label}
            for i in range(60) for label in [labels[i % len(labels)]]]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# ---------------------------------------------------------------- global options
# --set, --config and -v before or after the command: one precedence, later --set wins

def test_global_options_after_the_command(cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  max_epochs: 5\n  seed: 11\n")
    result = cli("--set", "train.max_epochs=3", "config", "show", "--json",
                 "--set", "train.max_epochs=8", "--config", cfg, "-v")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["values"]["train"]["max_epochs"] == 8  # the later --set wins
    assert data["sources"]["train.max_epochs"] == "cli"
    assert data["values"]["train"]["seed"] == 11 and data["sources"]["train.seed"] == "file"

    bad = cli("config", "show", "--set", "trian.seed=1", "-v")
    assert bad.exit_code == 1 and "Traceback" in bad.stderr and "train.seed" in bad.stderr
    assert cli("config", "show", "--set").exit_code == 2
    other = tmp_path / "d.yaml"
    other.write_text("train: {}\n")
    assert cli("--config", cfg, "config", "show", "--config", other).exit_code == 2


def test_set_after_train_reaches_the_run(cli, tmp_path):
    data = tmp_path / "data"
    assert cli("prep", _labelled_csv(tmp_path / "in.csv"), "--out", data).exit_code == 0
    result = cli("train", "--data", data, "--out", tmp_path / "run", "--model", "tiny", "--json",
                 "--set", "train.max_epochs=1", "--set", "registry.track_runs=false",
                 "--set", "model.tiny_layers=1", "--set", "train.batch_size=64")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["history"]) == 1


# ---------------------------------------------------------------- hints
# every hint that prints a command works when typed as printed

def test_prep_label_map_hint_works_as_printed(cli, tmp_path):
    source = _labelled_csv(tmp_path / "in.csv", labels=("meh", "very bad", "positive"))
    args = ["prep", str(source), "--out", str(tmp_path / "o")]
    first = cli(*args)
    assert first.exit_code == 1
    hint = re.search(r"map them with (.*) \(LABEL:", first.stderr).group(1)
    result = cli(*args, *_fill(hint, LABEL="negative"))
    assert result.exit_code == 0, result.output


def test_evaluate_hints_work_as_printed_after_the_command(cli, tmp_path, trained_tiny_model_dir):
    source = _labelled_csv(tmp_path / "in.csv", labels=("meh", "neutral", "positive"), column="gold")
    args = ["evaluate", str(trained_tiny_model_dir), "--data", str(source), "--out", str(tmp_path / "e")]
    first = cli(*args)
    assert first.exit_code == 1
    hint = re.search(r"; pass (--set \S+)$", first.stderr.strip()).group(1)
    args += _fill(hint, COLUMN="gold")
    second = cli(*args)
    assert second.exit_code == 1
    hint = re.search(r"map them with (.*) \(LABEL:", second.stderr).group(1)
    result = cli(*args, *_fill(hint, LABEL="negative"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["n"] == 60


def test_analyze_encoding_hint_works_as_printed(cli, tmp_path, trained_tiny_model_dir):
    source = tmp_path / "latin.csv"
    source.write_bytes("text\nCaf\xe9 chain profit rose 5%\nSales fell in M\xfcnchen\n".encode("latin-1"))
    args = ["analyze", str(source), "--model", str(trained_tiny_model_dir), "--out", str(tmp_path / "s.csv")]
    first = cli(*args)
    assert first.exit_code == 1
    hint = re.search(r"pass (--set \S+) or re-save", first.stderr).group(1)
    assert cli(*args, *shlex.split(hint)).exit_code == 0
    assert len(pd.read_csv(tmp_path / "s.csv")) == 2


# ---------------------------------------------------------------- hub offline
# a hub id that cannot load offline fails at once, in every command, with one hint

def _offline_env(tmp_path, **extra) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    # Not offline by env: the reachability probe decides (a closed loopback port, no traffic
    # leaves the machine), and an empty cache holds nothing.
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf-home"), **extra)
    return env


def test_default_model_offline_fails_fast_naming_model_dir(tmp_path):
    import subprocess
    import sys
    import time

    source = _labelled_csv(tmp_path / "in.csv")
    for extra in ({}, {"HF_HUB_OFFLINE": "1"}):
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "finsight", "analyze", str(source),
                               "--out", str(tmp_path / "o.csv")],
                              capture_output=True, text=True, timeout=120,
                              env=_offline_env(tmp_path, **extra))
        elapsed = time.monotonic() - start
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "--model DIR" in lines[0] and "ProsusAI/finbert" in lines[0], proc.stderr
        assert elapsed < 15, f"took {elapsed:.1f}s"
        assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("command", ["export", "evaluate", "train"])
def test_hub_id_offline_same_hint_everywhere(cli, tmp_path, command):
    args = {"export": ["export", "nobody-here/no-such-model", "--out", tmp_path / "x"],
            "evaluate": ["evaluate", "nobody-here/no-such-model", "--data", _labelled_csv(tmp_path / "e.csv")],
            "train": ["train", "--model", "nobody-here/no-such-model", "--out", tmp_path / "r",
                      "--data", tmp_path / "d"]}[command]
    if command == "train":
        assert cli("prep", _labelled_csv(tmp_path / "in.csv"), "--out", tmp_path / "d").exit_code == 0
    result = cli(*args, env={"HF_HOME": str(tmp_path / "hf-home")})
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "nobody-here/no-such-model" in errors[0] and "--model DIR" in errors[0], result.stderr


# ---------------------------------------------------------------- writability
# an unwritable output is one line naming the path and the OS reason, before the work

@pytest.mark.parametrize("command", ["prep", "analyze", "export", "train", "evaluate"])
def test_unwritable_out_is_one_line_before_the_work(cli, tmp_path, command, trained_tiny_model_dir):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be\n")
    source = _labelled_csv(tmp_path / "in.csv")
    out = blocker / "sub" / ("out.csv" if command == "analyze" else "out")
    args = {"prep": ["prep", source],
            "analyze": ["analyze", source, "--model", trained_tiny_model_dir],
            "export": ["export", trained_tiny_model_dir],
            "train": ["train", "--model", "tiny", "--data", tmp_path / "d"],
            "evaluate": ["evaluate", trained_tiny_model_dir, "--data", source]}[command]
    if command == "train":
        assert cli("prep", source, "--out", tmp_path / "d").exit_code == 0
    result = cli(*args, "--out", out)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr  # export: no "loading ..." step before the refusal
    assert str(out) in errors[0] and "not a directory" in errors[0] and "--out" in errors[0]


def test_disk_errors_while_writing_become_output_errors(tmp_path):
    import errno

    from finsight.errors import OutputError
    from finsight.io import TableWriter, atomic_dir, atomic_path

    def full(target):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    with pytest.raises(OutputError, match=r"out\.csv: No space left on device; free some space"):
        with TableWriter(tmp_path / "out.csv") as writer:
            writer._write = full
            writer.write(pd.DataFrame({"a": [1]}))
    with pytest.raises(OutputError, match="No space left"):
        with atomic_path(tmp_path / "x.json") as tmp:
            full(tmp)
    with pytest.raises(OutputError, match="No space left"):
        with atomic_dir(tmp_path / "d") as tmp:
            full(tmp / "f")
    with pytest.raises(ValueError):  # anything else is not an output problem
        with atomic_path(tmp_path / "y.json"):
            raise ValueError("a bug")
    assert [p.name for p in tmp_path.iterdir()] == []


# ---------------------------------------------------------------- inputs that are not text tables
# spreadsheets and binary files are named as such, not called encoding problems

def _xlsx(path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:  # the parts that make a file an .xlsx
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    return path


@pytest.mark.parametrize("name", ["headlines.xlsx", "renamed.csv"])
def test_spreadsheet_is_not_called_an_encoding_problem(cli, tmp_path, name, tiny_model_dir):
    source = _xlsx(tmp_path / name)
    for args in (["prep", source, "--out", tmp_path / "o"],
                 ["prep", source, "--out", tmp_path / "o", "--encoding", "latin-1"],
                 ["analyze", source, "--model", tiny_model_dir, "--out", tmp_path / "s.csv"]):
        result = cli(*args)
        assert result.exit_code == 1
        line = result.stderr.strip()
        assert "Excel workbook" in line and "CSV" in line and "Parquet" in line, line
        assert "utf-8" not in line and "latin-1" not in line and "malformed" not in line, line


def test_random_binary_with_latin1_is_binary_not_columns(cli, tmp_path):
    import random

    source = tmp_path / "blob.csv"
    source.write_bytes(random.Random(0).randbytes(4096))
    result = cli("prep", source, "--out", tmp_path / "o", "--encoding", "latin-1")
    assert result.exit_code == 1
    assert "binary data" in result.stderr and "has columns" not in result.stderr, result.stderr


# ---------------------------------------------------------------- missing and empty texts
# one rule for null markers and zero-width texts, the same in prep and analyze

_ODD_TEXTS = {"NaN": "missing text", " na ": "missing text", "NULL": "missing text", "#N/A": "missing text",
              "\u200b\u200b": "empty text", " \ufeff\u2060 ": "empty text", "Nanotech shares rose": None}


def test_null_markers_and_zero_width_texts_are_flagged_in_analyze(cli, tmp_path, trained_tiny_model_dir):
    rows = [{"id": f"r{i}", "text": text} for i, text in enumerate(_ODD_TEXTS)] + [{"id": "null", "text": None}]
    source = tmp_path / "odd.jsonl"
    pd.DataFrame(rows).to_json(source, orient="records", lines=True)
    csv = tmp_path / "odd.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    for path in (source, csv):
        out = tmp_path / f"{path.stem}-{path.suffix[1:]}.scored.jsonl"
        result = cli("analyze", path, "--model", trained_tiny_model_dir, "--out", out, "--id-column", "id")
        assert result.exit_code == 0, result.output
        scored = pd.read_json(out, lines=True, dtype={"id": str})
        expected = [*_ODD_TEXTS.values(), "missing text"]
        assert [None if pd.isna(e) else e for e in scored["error"]] == expected
        assert scored.loc[scored["error"].notna(), "label"].isna().all()


def test_prep_drops_texts_by_the_same_rule(cli, tmp_path):
    good = [{"text": f"Company {i} reports quarter {i}", "label": LABELS[i % 3]} for i in range(30)]
    odd = [{"text": text, "label": "neutral"} for text in _ODD_TEXTS]
    source = tmp_path / "in.csv"
    pd.DataFrame(good + odd).to_csv(source, index=False)
    result = cli("prep", source, "--out", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    assert card["dropped"]["empty_text"] == sum(e is not None for e in _ODD_TEXTS.values())
    kept = pd.concat(pd.read_parquet(tmp_path / "o" / f"{s}.parquet") for s in ("train", "validation", "test"))
    assert "Nanotech shares rose" in set(kept["text"])
    assert not kept["text"].str.casefold().isin({"nan", "na", "null", "#n/a"}).any()


# ---------------------------------------------------------------- locks and parallel runs
# a second training into one --out is refused; parallel first runs create one MLflow store

def test_second_training_into_one_out_is_refused(cli, tmp_path):
    from filelock import FileLock

    from finsight.train.runner import LOCK_FILE

    data = tmp_path / "d"
    assert cli("prep", _labelled_csv(tmp_path / "in.csv"), "--out", data).exit_code == 0
    out = tmp_path / "run"
    out.mkdir()
    with FileLock(out / LOCK_FILE, timeout=0):  # a training in progress (held by this process)
        result = cli("train", "--data", data, "--out", out, "--model", "tiny",
                     "--set", "registry.track_runs=false")
    assert result.exit_code == 1
    assert "another finsight train is writing to" in result.stderr and "--out" in result.stderr
    assert not (out / "checkpoints").exists()


_OPEN_RUN = """
import pathlib, sys, time
from finsight.config import load_settings
from finsight.registry import tracking
import mlflow, lightning.pytorch.loggers  # imported before the start line, so the race is tight
settings = load_settings(None, [f"workdir={sys.argv[1]}", "registry.experiment=race"])
barrier = pathlib.Path(sys.argv[2])
(barrier / sys.argv[3]).touch()
while not (barrier / "go").exists():
    time.sleep(0.002)
print(tracking.open_run(settings, run_name=sys.argv[3]).run_id)
"""


def test_parallel_first_runs_create_the_mlflow_store_once(tmp_path):
    import subprocess
    import sys
    import time

    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_RUN, str(tmp_path / "w"), str(barrier), f"r{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.monotonic() + 180
    while len(list(barrier.iterdir())) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    (barrier / "go").touch()  # all imported: they open the store at the same moment
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (stdout, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr[-2000:]
    assert len({stdout.strip() for stdout, _ in results}) == len(procs)


# ---------------------------------------------------------------- failed starts and SIGTERM
# a failed start leaves no run dir; SIGTERM removes temp files like Ctrl-C

def test_failed_start_leaves_no_run_dir(cli, tmp_path):
    data = tmp_path / "d"
    assert cli("prep", _labelled_csv(tmp_path / "in.csv"), "--out", data).exit_code == 0
    out = tmp_path / "runs" / "r1"
    result = cli("train", "--data", data, "--out", out, "--model", "nobody-here/no-such-model",
                 "--set", "registry.track_runs=false", env={"HF_HOME": str(tmp_path / "hf")})
    assert result.exit_code == 1 and "--model DIR" in result.stderr
    assert not out.exists()


def test_sigterm_during_analyze_leaves_no_temp_file(tmp_path, trained_tiny_model_dir):
    import signal
    import subprocess
    import sys
    import time

    source = tmp_path / "big.csv"
    pd.DataFrame({"text": [f"Company {i} raised its dividend by {i % 17} percent" for i in range(300_000)]}
                 ).to_csv(source, index=False)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "finsight", "analyze", str(source), "--model",
                             str(trained_tiny_model_dir), "--out", str(out_dir / "s.csv"),
                             "--backend", "torch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out_dir.glob(".*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "analyze ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert list(out_dir.iterdir()) == []


# ---------------------------------------------------------------- output
# document summaries with counts and close calls, epochs counted from 1, no third-party bars

def test_document_summary_shows_counts_mean_probs_and_close_calls(cli, tmp_path, tiny_model_dir):
    from finsight.predict.scores import CLOSE_CALL, label_margin

    filings = Path(__file__).resolve().parents[1] / "examples" / "filings.jsonl"
    out = tmp_path / "docs.jsonl"
    args = ["analyze", filings, "--model", tiny_model_dir, "--mode", "document", "--out", out]
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    docs = pd.read_json(out, lines=True)
    probs = docs[["p_negative", "p_neutral", "p_positive"]].to_numpy()
    assert summary["label_counts"] == {label: int((docs["label"] == label).sum()) for label in LABELS}
    assert summary["mean_probabilities"] == pytest.approx(dict(zip(LABELS, probs.mean(axis=0))), abs=1e-5)
    assert summary["mean_sentiment"] == pytest.approx(
        summary["mean_probabilities"]["positive"] - summary["mean_probabilities"]["negative"], abs=1e-5)
    close = int((label_margin(probs) < CLOSE_CALL).sum())
    assert summary["close_calls"] == close and close > len(docs) // 2  # an untrained model

    table = cli(*args)
    assert table.exit_code == 0
    assert "mean p (neg/neu/pos)" in table.stdout and "close calls" in table.stdout
    assert f"{close} of {len(docs)} labels lead the runner-up by less than" in table.stderr


def test_epochs_count_from_one_everywhere(cli, tmp_path):
    import mlflow

    data = tmp_path / "d"
    assert cli("prep", _labelled_csv(tmp_path / "in.csv"), "--out", data).exit_code == 0
    out = tmp_path / "run"
    result = cli("train", "--data", data, "--out", out, "--model", "tiny", "--set", "train.max_epochs=2",
                 "--set", f"workdir={tmp_path / 'w'}", "--set", "model.tiny_layers=1",
                 "--set", "train.early_stopping_patience=0")
    assert result.exit_code == 0, result.output
    assert "run run" not in result.stdout and "finsight train: run" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["history"]] == [1, 2]
    assert (out / "checkpoints" / f"best-epoch{metrics['best_epoch']}.ckpt").is_file()
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'w' / 'mlflow.db').resolve()}")
    epochs = {m.value for m in client.get_metric_history(metrics["mlflow_run_id"], "epoch")}
    assert epochs == {1.0, 2.0}


def test_export_prints_no_loading_bar(cli, tmp_path, trained_tiny_model_dir):
    result = cli("export", trained_tiny_model_dir, "--out", tmp_path / "x", "--no-optimize")
    assert result.exit_code == 0, result.output
    assert "Loading weights" not in result.stderr and "%|" not in result.stderr, result.stderr


# ---------------------------------------------------------------- 80 columns
# --help of every command and config show are readable at 80 columns

def _command_paths(command, prefix=()):
    yield prefix
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from _command_paths(sub, (*prefix, name))


def test_help_and_config_show_fit_80_columns(cli):
    import typer

    from finsight.cli import app
    from finsight.config import all_keys

    env = {"COLUMNS": "80"}
    paths = list(_command_paths(typer.main.get_command(app)))
    assert ("config", "show") in paths and ("analyze",) in paths
    for path in paths:
        result = cli(*path, "--help", env=env)
        assert result.exit_code == 0, path
        for line in result.stdout.splitlines():
            assert len(line) <= 80 and "…" not in line and "<bool>" not in line, (path, line)
            if not line.startswith("Usage:"):
                assert not line.rstrip().endswith("..."), (path, line)  # a cut-off description
    shown = cli("config", "show", env=env)
    assert shown.exit_code == 0
    lines = shown.stdout.splitlines()
    assert all(len(line) <= 80 and line == line.rstrip() for line in lines)
    starts = {line.split(" = ")[0] for line in lines if " = " in line and not line.startswith(" ")}
    assert starts == set(all_keys())  # every key whole, at the start of its own line


# ---------------------------------------------------------------- the demo
# its next steps point at what it wrote

def test_demo_next_steps_point_at_the_demo_outputs(monkeypatch):
    from finsight.config import load_settings

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    script = (root / "examples" / "demo.sh").read_text()
    workdir = re.search(r"^W=(\S+)$", script, re.M).group(1)
    model = re.search(r"^M=(\S+)$", script, re.M).group(1).replace("$W", workdir)
    settings = load_settings(root / "configs" / "quickstart.yaml")
    assert (root / workdir).resolve() == settings.workdir.resolve()
    # the pipeline's train stage writes <workdir>/runs/<pipeline.name>/model
    assert model == f"{workdir}/runs/{settings.pipeline.name}/model"
    steps = script[script.index("Next steps"):]
    db = re.search(r"ui --backend-store-uri sqlite:///(\S+)", steps).group(1).replace("$W", workdir)
    assert f"sqlite:///{(root / db).resolve()}" == settings.tracking_uri()
    assert re.search(r"analyze \S+ --model \$M ", steps) and re.search(r"serve --model \$M", steps)
    readme = (root / "README.md").read_text()
    assert f"sqlite:///{db}" in readme and model in readme
