"""The CLI shell: global options, config show/init, exit codes, import cost of --help."""

from __future__ import annotations

import json
import subprocess
import sys

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
