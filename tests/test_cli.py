"""The CLI shell: global options, config show/init, exit codes, import cost of --help."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from finsight import __version__


def _show(cli, *args, env=None):
    result = cli(*args, "config", "show", "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_set_then_env_then_file(cli, tmp_path):
    data = _show(cli, "--set", "train.learning_rate=3e-5")
    assert data["values"]["train"]["learning_rate"] == 3e-5
    assert data["sources"]["train.learning_rate"] == "cli"

    data = _show(cli, env={"FINSIGHT_TRAIN__LEARNING_RATE": "1e-4"})
    assert data["values"]["train"]["learning_rate"] == 1e-4
    assert data["sources"]["train.learning_rate"] == "env"

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"learning_rate": 7e-5}}))
    data = _show(cli, "--config", cfg)
    assert data["values"]["train"]["learning_rate"] == 7e-5
    assert data["sources"]["train.learning_rate"] == "file"
    assert data["sources"]["train.batch_size"] == "default"


def test_unknown_key_is_one_line_exit_1(cli):
    result = cli("--set", "trian.learning_rate=1", "config", "show")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.learning_rate" in lines[0]
    assert "Traceback" not in result.output


def test_verbose_shows_the_traceback(cli):
    result = cli("-v", "--set", "trian.learning_rate=1", "config", "show")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr


def test_usage_errors_exit_2(cli):
    assert cli("--no-such-flag").exit_code == 2
    assert cli("config", "show", "--nope").exit_code == 2
    assert cli("no-such-command").exit_code == 2


def test_version_and_table(cli):
    assert cli("--version").stdout.strip() == f"finsight {__version__}"
    result = cli("--set", "serve.port=9001", "config", "show")
    assert result.exit_code == 0
    assert "serve.port" in result.stdout and "9001" in result.stdout and "cli" in result.stdout


def test_config_init_writes_default_yaml(cli, tmp_path):
    from finsight.config import default_yaml

    target = tmp_path / "out" / "my.yaml"
    assert cli("config", "init", target).exit_code == 0
    assert target.read_text() == default_yaml()
    again = cli("config", "init", target)
    assert again.exit_code == 1 and "--force" in again.stderr
    assert cli("config", "init", target, "--force").exit_code == 0


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from finsight.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'mlflow', 'onnxruntime', 'lightning',"
            " 'pandas', 'datasets') if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stderr, proc.stderr


def test_python_dash_m_and_console_script():
    proc = subprocess.run([sys.executable, "-m", "finsight", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"finsight {__version__}"


# ---------------------------------------------------------------- flag help comes from the settings


def _commands(command, path=()):
    """Every leaf command of the click tree with its path, e.g. ('triton', 'build')."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def test_every_setting_flag_shows_its_keys_description(cli):
    import typer

    from finsight.cli import app
    from finsight.cli._app import describe_settings, setting_key
    from finsight.config import field_info

    seen = 0
    for path, command in _commands(typer.main.get_command(app)):
        keys = {param.name: setting_key(param) for param in command.params if setting_key(param)}
        describe_settings(command)
        for param in command.params:
            if param.name in keys:
                description = field_info(keys[param.name]).description
                assert description[1:] in param.help and f"({keys[param.name]})" in param.help, \
                    (path, param.name, param.help)
                seen += 1
    assert seen >= 40
    # What a user reads: the rendered help, wrapped, says the same.
    shown = " ".join(cli("prep", "--help").stdout.split())
    assert "Text column; None tries text, sentence, headline, title (data.text_column)." in shown


def _flags_setting_keys(tree, keys: set[str]):
    """(command, parameter, key, the parameter's declaration) for each `{"section.key": ...}` a
    command builds from one of its parameters."""
    import ast

    shared = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Name)}  # e.g. models.py's _URI
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef):
            continue
        args = func.args.args + func.args.kwonlyargs
        defaults = dict(zip([a.arg for a in args[len(args) - len(func.args.defaults):]], func.args.defaults))
        defaults.update({a.arg: d for a, d in zip(func.args.kwonlyargs, func.args.kw_defaults)})
        for mapping in (node for node in ast.walk(func) if isinstance(node, ast.Dict)):
            for key, value in zip(mapping.keys, mapping.values):
                if isinstance(key, ast.Constant) and key.value in keys:
                    for name in {n.id for n in ast.walk(value) if isinstance(n, ast.Name)} & set(defaults):
                        declared = defaults[name]
                        if isinstance(declared, ast.Name):
                            declared = shared.get(declared.id, declared)
                        yield func.name, name, key.value, declared


def test_no_flag_that_sets_a_key_has_hand_written_help():
    """Every `{"section.key": <flag>}` a command passes to settings() names a flag declared with
    setting("section.key", ...), so its help cannot re-describe the key in other words."""
    import ast

    from finsight.config import all_keys

    offenders, checked = [], 0
    for module in sorted((REPO / "finsight" / "cli").glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for command, name, key, declared in _flags_setting_keys(tree, set(all_keys())):
            checked += 1
            if not (isinstance(declared, ast.Call) and getattr(declared.func, "id", "") == "setting"
                    and isinstance(declared.args[0], ast.Constant) and declared.args[0].value == key):
                offenders.append(f"{module.name}:{command} --{name} sets {key}")
    assert checked >= 40
    assert not offenders, "declare these flags with setting(KEY, ...): " + "; ".join(offenders)


# ---------------------------------------------------------------- README examples run as printed

REPO = Path(__file__).resolve().parents[1]
# Examples this test cannot run here, and why; each must still be in README (so this list
# cannot go stale). Everything else README shows for a command the CLI has must exit 0.
_SERVER = "starts a server that runs until stopped: tests/test_serve_live.py runs `finsight serve` as a process"
NOT_RUN = {
    "finsight -c configs/finbert.yaml train --data DIR": "downloads ProsusAI/finbert from the Hub",
    "finsight train --data DIR --model /path/to/local/hf/dir --set train.devices=4 --set train.strategy=ddp":
        "needs 4 devices and a base model",
    "finsight -c configs/finbert.yaml pipeline run": "downloads ProsusAI/finbert from the Hub",
    "finsight -c configs/quickstart.yaml pipeline run":
        "tests/test_pipeline.py runs this config end to end (with fewer epochs), reruns and resumes it",
    "finsight -c configs/quickstart.yaml pipeline run --set train.max_epochs=12": "as above",
    "finsight -c configs/quickstart.yaml pipeline run --from export --to triton --json": "as above",
    ".venv/bin/finsight serve --model finsight-work/runs/demo/model": _SERVER,
    "finsight serve --model finsight-work/runs/r1/export-onnx-int8": _SERVER,
    "finsight serve --model models:/finsight-sentiment@prod --host 0.0.0.0 --port 8080 --workers 2": _SERVER,
    "finsight serve --model RUN/model --set serve.api_keys_file=keys.txt --set serve.rate_limit=600/minute":
        _SERVER,
    "finsight register RUN/model --tracking-uri http://mlflow.internal:5000":
        "a team's MLflow server: tests/test_mlflow_server.py registers through a real local one",
    "finsight triton check --repo triton-gpu --url triton.internal:8001 --protocol grpc":
        "a remote server: tests/test_triton.py checks through a real local one with --url",
    "finsight analyze news.csv --model export-onnx --backend triton --set triton.url=127.0.0.1:8000":
        "needs a running tritonserver: tests/test_triton.py runs analyze against a real one",
}
# Placeholders and paths in README -> what stands for them here (cwd is the test's tmp dir).
# Extend this (and _example_inputs) when README gains a command whose placeholders differ.
SUBSTITUTE = (
    (r"^\.\./shared/data/", f"{REPO.parent}/shared/data/"),
    (r"^(configs|examples)/", rf"{REPO}/\1/"),
    (r"^(finsight-work/runs/)?RUN/", "finsight-work/runs/tiny/"),
    (r"^finsight-work/runs/r1/", "finsight-work/runs/tiny/"),
    (r"^finsight-work/demo/export-onnx-int8$", "finsight-work/runs/tiny/export-onnx-int8"),
    (r"^DIR$", "finsight-work/data/headlines"),
    (r"^DATA/", "finsight-work/data/headlines/"),
    (r"^MODEL$", "finsight-work/runs/tiny/model"),
    (r"^export-onnx$", "finsight-work/runs/tiny/export-onnx"),
    (r"^finsight-work/runs/demo/", "finsight-work/runs/tiny/"),
)
# Commands that produce what later ones use run first; README order within a command.
STAGES = ("config", "prep", "train", "export", "evaluate", "register", "models", "analyze", "triton")


def readme_examples() -> list[tuple[str, list[str]]]:
    """(line as printed, argv after `finsight`) for every finsight command in README's bash blocks."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    examples = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            argv = shlex.split(line, comments=True)
            if argv and Path(argv[0]).name == "finsight":
                examples.append((" ".join(argv), argv[1:]))
    return examples


def _command(argv: list[str]) -> str | None:
    """The subcommand of an argv, skipping global options and their values."""
    args = iter(argv)
    for arg in args:
        if arg in ("-c", "--config", "-s", "--set"):
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _substitute(arg: str) -> str:
    key, eq, value = arg.partition("=") if not arg.startswith("-") else ("", "", arg)
    target = value if eq else arg
    for pattern, replacement in SUBSTITUTE:
        target = re.sub(pattern, replacement, target)
    return f"{key}={target}" if eq else target


def _example_inputs(cwd: Path) -> None:
    """The files README's examples name, written in the test's cwd."""
    import shutil

    import pandas as pd

    headlines = pd.read_csv(REPO / "examples" / "headlines.csv")
    codes = headlines["label"].map({"negative": 0, "positive": 1, "neutral": 2})
    pd.DataFrame({"id": headlines["id"], "headline": headlines["text"], "label": codes}).to_csv(
        cwd / "news.csv", index=False)
    half = len(headlines) // 2
    headlines.iloc[:half].to_csv(cwd / "train.csv", index=False)
    headlines.iloc[half:].to_json(cwd / "test.jsonl", orient="records", lines=True)
    headlines[["text", "label"]].to_csv(cwd / "labeled.csv", index=False)
    headlines.iloc[:half].to_json(cwd / "a.jsonl", orient="records", lines=True)
    headlines.iloc[half:].to_json(cwd / "b.jsonl", orient="records", lines=True)
    shutil.copy(REPO / "examples" / "filings.jsonl", cwd / "filings.jsonl")
    shutil.copy(REPO / "examples" / "nyse-holidays-2026.txt", cwd / "nyse-holidays-2026.txt")
    minutes = pd.to_timedelta((headlines.index * 37) % (24 * 60), unit="min")
    stamps = pd.to_datetime(headlines["date"]) + minutes
    headlines.assign(published_at=stamps.dt.strftime("%Y-%m-%dT%H:%M:00-05:00")).to_csv(
        cwd / "timed-news.csv", index=False)


def test_readme_examples_run_as_printed(cli, tmp_path):
    import typer

    from finsight.cli import app

    examples = readme_examples()
    printed = {line for line, _ in examples}
    assert set(NOT_RUN) <= printed, set(NOT_RUN) - printed
    commands = typer.main.get_command(app).commands
    runnable = [(line, argv) for line, argv in examples
                if line not in NOT_RUN and _command(argv) in commands]
    runnable.sort(key=lambda ex: STAGES.index(_command(ex[1])) if _command(ex[1]) in STAGES else len(STAGES))
    _example_inputs(tmp_path)
    ran, skipped = [], []
    for line, argv in runnable:
        args = [_substitute(arg) for arg in argv]
        missing = [a for a in args if "shared/data/" in a and not Path(a).exists()]
        if missing:
            skipped.append(f"{line} ({missing[0]} absent)")
            continue
        leftover = [a for a in args if re.search(r"\b[A-Z]{2,}\b", a) and not a.startswith("-")]
        assert not leftover, f"README example {line!r} has placeholders {leftover}: extend SUBSTITUTE"
        # An example without --model uses the default hub model: here the tiny run stands for it.
        result = cli(*args, env={"FINSIGHT_PREDICT__MODEL": str(tmp_path / "finsight-work/runs/tiny/model")})
        assert result.exit_code == 0, f"README example failed: {line}\n  ran: {args}\n{result.output[-3000:]}"
        ran.append(line)
    core = {line for line, argv in examples if _command(argv) in STAGES and line not in NOT_RUN}
    assert core <= set(ran) | {s.split(" (")[0] for s in skipped}, core - set(ran)
    assert len(ran) >= 20, (ran, skipped)
