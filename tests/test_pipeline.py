"""`finsight pipeline run` on configs/quickstart.yaml: end to end, resumable, stops at a failure."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import EXAMPLES, REPO_ROOT

QUICKSTART = REPO_ROOT / "configs" / "quickstart.yaml"


@pytest.fixture
def project(tmp_path, one_thread):
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    return tmp_path


def _run(cli, *sets, args=()):
    overrides = [item for key in ("train.max_epochs=2", "registry.track_runs=false", *sets)
                 for item in ("--set", key)]
    result = cli("-c", QUICKSTART, *overrides, "pipeline", "run", "--json", *args)
    report = json.loads(result.stdout) if result.stdout.strip() else None
    return result, report


def _status(report):
    return {stage["name"]: stage["status"] for stage in report["stages"]}


def test_pipeline_runs_skips_reruns_and_resumes(cli, project):
    first, report = _run(cli)
    assert first.exit_code == 0, first.stderr
    assert _status(report) == dict.fromkeys(["prep", "train", "evaluate", "export", "register", "triton",
                                                    "analyze"], "ran")
    work = project / "finsight-work"
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["prep"]["summary"]["rows_out"] == 300
    assert set(stages["export"]["summary"]) == {"fp32", "int8"}
    assert all(s["valid"] for s in stages["export"]["summary"].values())
    scored = stages["analyze"]["outputs"]["headlines.csv"]
    assert scored.startswith(str(work.resolve())) and (work / "analyze").is_dir()
    assert (work / "runs" / "demo" / "model" / "finsight.json").is_file()
    assert (work / "eval" / "demo-test" / "metrics.json").is_file()
    registered = stages["register"]["summary"]
    assert (registered["version"], registered["aliases"], registered["precision"]) == (1, ["champion"], "int8")
    repository = stages["triton"]["outputs"]["repository"]
    assert (work / "triton" / "finsight" / "config.pbtxt").is_file() and repository == str((work / "triton").resolve())
    assert stages["triton"]["summary"]["source_precision"] == "int8"  # the int8 export, as analyze uses

    again, report = _run(cli)
    assert again.exit_code == 0, again.stderr
    assert set(_status(report).values()) == {"skipped"}
    assert all("unchanged since" in s["reason"] for s in report["stages"])

    longer, report = _run(cli, "train.max_epochs=3")
    assert longer.exit_code == 0, longer.stderr
    assert next(s for s in report["stages"] if s["name"] == "register")["summary"]["version"] == 2
    assert _status(report) == {"prep": "skipped", "train": "ran", "evaluate": "ran", "export": "ran",
                               "register": "ran", "triton": "ran", "analyze": "ran"}

    # A failing export stops the run, names the stage and keeps what came before.
    broken, report = _run(cli, "train.max_epochs=3", "export.validate_data=missing.csv")
    assert broken.exit_code == 1
    assert "pipeline stopped at stage 'export'" in broken.stderr and "missing.csv" in broken.stderr
    assert _status(report) == {"prep": "skipped", "train": "skipped", "evaluate": "skipped",
                               "export": "failed", "register": "not run", "triton": "not run", "analyze": "not run"}
    resumed, report = _run(cli, "train.max_epochs=3")
    assert resumed.exit_code == 0, resumed.stderr
    assert _status(report) == {"prep": "skipped", "train": "skipped", "evaluate": "skipped",
                               "export": "ran", "register": "ran", "triton": "ran", "analyze": "ran"}

    # --to evaluate --from evaluate: just that stage, re-run although nothing changed.
    forced, report = _run(cli, "train.max_epochs=3", args=("--from", "evaluate", "--to", "evaluate"))
    assert forced.exit_code == 0, forced.stderr
    assert _status(report) == {"prep": "skipped", "train": "skipped", "evaluate": "ran"}

    skipping, report = _run(cli, "train.max_epochs=3", "pipeline.skip=[register, triton]")
    assert skipping.exit_code == 0, skipping.stderr
    assert _status(report)["register"] == _status(report)["triton"] == "disabled"


def test_unknown_stage_and_missing_inputs_are_one_line_errors(cli, project):
    bad, _ = _run(cli, args=("--from", "deploy"))
    assert bad.exit_code == 1 and "no such stage" in bad.stderr
    empty = cli("--set", "pipeline.inputs=[]", "--set", "registry.track_runs=false", "pipeline", "run")
    assert empty.exit_code == 1 and "pipeline stopped at stage 'prep'" in empty.stderr
    assert "pipeline.inputs is empty" in empty.stderr
