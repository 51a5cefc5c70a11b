"""A model is checked before it scores: its files against the sha256 list in its finsight.json,
and what that manifest records against the files (labels, base model, data card).

analyze, a real `finsight serve` process and `finsight triton build` refuse a tampered export
with one line naming the file; `predict.verify=false` loads it with a warning; the stamp cache
that keeps the check cheap re-hashes a file whose content changed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from predict_helpers import make_onnx_export  # noqa: E402
from serve_helpers import LiveServer  # noqa: E402

from finsight import artifacts  # noqa: E402
from finsight.artifacts import DATA_CARD, file_hashes, stamp_beside, write_manifest  # noqa: E402
from finsight.config import load_settings  # noqa: E402
from finsight.errors import ModelError  # noqa: E402
from finsight.model.ref import resolve_artifact  # noqa: E402


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, trained_tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("verify")
    shutil.copytree(trained_tiny_model_dir, root / "model")
    return make_onnx_export(root / "model", root / "export-onnx")


@pytest.fixture
def export(pristine, tmp_path) -> Path:
    """A fresh copy of the valid export for each test to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "run" / "export-onnx"))


@pytest.fixture
def texts(tmp_path) -> Path:
    path = tmp_path / "texts.csv"
    path.write_text("text\nProfit rose sharply.\nShares fell.\n")
    return path


def _flip_byte(path: Path, offset: int = 100) -> None:
    """One byte changed in place: same size, a new mtime."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def _tamper(export: Path, how: str) -> str:
    """Damage ``export`` as ``how`` says; return what the refusal must name."""
    if how == "changed":
        _flip_byte(export / "model.onnx")
        return "changed: model.onnx"
    if how == "missing":
        (export / "tokenizer_config.json").unlink()
        return "missing: tokenizer_config.json"
    (export / "notes.txt").write_text("added after the export\n")
    return "added, not in the manifest: notes.txt"


def _one_error_line(stderr: str, *needles: str) -> None:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert all(needle in lines[0] for needle in needles), stderr


@pytest.mark.parametrize("how", ["changed", "missing", "added"])
def test_analyze_refuses_a_tampered_export_naming_the_file(cli, export, texts, tmp_path, how):
    named = _tamper(export, how)
    out = tmp_path / "scored.csv"
    result = cli("analyze", texts, "--model", export, "--out", out)
    assert result.exit_code == 1
    _one_error_line(result.stderr, str(export), named, "finsight.json")
    assert not out.exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_real_serve_process_exits_1_before_binding(export, tmp_path, workers):
    """With --workers 2 the parent checks the model before uvicorn starts any worker."""
    named = _tamper(export, "changed")
    live = LiveServer(export, tmp_path / "serve.log", "predict.backend=onnx", f"serve.workers={workers}")
    try:
        code = live.proc.wait(90)
    finally:
        live.stop()
    output = live.output()
    assert code == 1, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0], output
    assert "Uvicorn running" not in output and "Traceback" not in output, output


def test_verify_false_loads_it_with_a_warning(cli, export, texts, tmp_path):
    _tamper(export, "added")
    result = cli("--set", "predict.verify=false", "analyze", texts, "--model", export,
                 "--out", tmp_path / "scored.csv", "--json")
    assert result.exit_code == 0, result.stderr
    assert f"warning: predict.verify=false: the files of {export} are not checked" in result.stderr
    assert json.loads(result.stdout)["rows"] == 2


def test_the_library_warns_instead_of_printing(export, capsys):
    from finsight.errors import FinsightWarning
    from finsight.predict import load_predictor

    _tamper(export, "added")
    settings = load_settings(flags={"predict.verify": False})
    with pytest.warns(FinsightWarning, match="predict.verify=false"):
        load_predictor(str(export), settings)
    assert capsys.readouterr() == ("", "")


def test_triton_build_refuses_to_copy_a_tampered_export(export, tmp_path):
    from finsight.triton.repository import build_repository

    named = _tamper(export, "changed")
    settings = load_settings(flags={"triton.repository": tmp_path / "repo"})
    with pytest.raises(ModelError, match=named):
        build_repository(str(export), settings)
    assert not (tmp_path / "repo").exists()


# ---------------------------------------------------------------- the stamp cache


def _files(directory: Path) -> int:
    return sum(1 for p in directory.rglob("*") if p.is_file() and p.name != "finsight.json")


def _verify(export: Path, stamp_dir: Path) -> None:
    resolve_artifact(str(export)).verify_files(stamp_dir=stamp_dir)


@pytest.fixture
def counted(monkeypatch) -> list[str]:
    """The files hashed, in order (the stamps' whole point is that a warm check hashes none)."""
    hashed: list[str] = []
    real = artifacts.sha256_file

    def counting(path):
        hashed.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(artifacts, "sha256_file", counting)
    return hashed


def test_a_warm_check_hashes_nothing_and_a_content_change_is_still_caught(export, tmp_path, counted, monkeypatch):
    monkeypatch.setattr(artifacts, "_RACY_NS", 0)  # the copy is seconds old; trust it at once
    _verify(export, tmp_path / "stamps")
    assert len(counted) == _files(export) and stamp_beside(export).is_file()
    counted.clear()
    _verify(export, tmp_path / "stamps")
    assert counted == []

    import os
    import time

    before = (export / "model.onnx").stat()
    time.sleep(0.05)  # past the file system's timestamp tick
    _flip_byte(export / "model.onnx")
    # Same size, and mtime put back as it was: ctime (which utime cannot set) still moved.
    os.utime(export / "model.onnx", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (export / "model.onnx").stat().st_size == before.st_size
    with pytest.raises(ModelError, match="changed: model.onnx"):
        _verify(export, tmp_path / "stamps")
    assert counted == ["model.onnx"]


def test_a_file_written_moments_ago_gets_no_stamp(export, tmp_path):
    """A write in the same timestamp tick as the check could keep size, mtime and ctime: files
    younger than the racy window are hashed again next time."""
    import time

    time.sleep(artifacts._RACY_NS / 1e9 + 0.1)  # the copy's files are now past the window
    (export / "model.onnx").write_bytes((export / "model.onnx").read_bytes())  # new ctime, same bytes
    _verify(export, tmp_path / "stamps")
    stamped = json.loads(stamp_beside(export).read_text())["files"]
    assert "model.onnx" not in stamped and "config.json" in stamped


def test_a_read_only_parent_keeps_stamps_under_the_workdir_or_none(export, tmp_path, counted, monkeypatch):
    from finsight.errors import OutputError

    monkeypatch.setattr(artifacts, "_RACY_NS", 0)
    real = artifacts.atomic_write_json
    writable = {"workdir": True}

    def read_only_mount(path, payload):
        if Path(path) == stamp_beside(export) or not writable["workdir"]:
            raise OutputError(f"cannot write {path}: read-only file system")
        return real(path, payload)

    monkeypatch.setattr(artifacts, "atomic_write_json", read_only_mount)
    stamps = tmp_path / "work" / "verified"
    _verify(export, stamps)
    assert not stamp_beside(export).exists() and len(list(stamps.glob("*.json"))) == 1
    counted.clear()
    _verify(export, stamps)
    assert counted == []

    shutil.rmtree(stamps)
    writable["workdir"] = False  # nowhere to write: every start hashes, and still loads
    _verify(export, stamps)
    _verify(export, stamps)
    assert len(counted) == 2 * _files(export)


def test_a_broken_stamp_file_is_a_cold_start(export, tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "_RACY_NS", 0)
    stamp_beside(export).write_text("{not json")
    _verify(export, tmp_path / "stamps")
    assert json.loads(stamp_beside(export).read_text())["files"]


# ---------------------------------------------------------------- manifest vs files


def _train_output(model_dir: Path, out: Path, **manifest) -> Path:
    """A train output as finsight train writes it: <run>/model with finsight.json."""
    target = Path(shutil.copytree(model_dir, out / "model"))
    config = json.loads((target / "config.json").read_text())
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    write_manifest(target, {"kind": "model", "format": "hf", "labels": labels, "max_length": 64,
                            "base_model": "tiny", "data_card_sha256": None, "data_dir": None,
                            "files": file_hashes(target), **manifest})
    return target


def _base_with(tmp_path: Path, model_dir: Path, **changes) -> Path:
    base = tmp_path / "base"
    base.mkdir()
    config = json.loads((model_dir / "config.json").read_text()) | changes
    (base / "config.json").write_text(json.dumps(config))
    return base


def test_a_recorded_base_model_of_another_shape_is_refused(cli, trained_tiny_model_dir, texts, tmp_path):
    base = _base_with(tmp_path, trained_tiny_model_dir, hidden_size=768, num_hidden_layers=12)
    model = _train_output(trained_tiny_model_dir, tmp_path / "run", base_model=str(base))
    result = cli("analyze", texts, "--model", model, "--backend", "torch", "--out", tmp_path / "o.csv")
    assert result.exit_code == 1
    _one_error_line(result.stderr, f"base_model {base} has hidden_size 768 vs 32",
                    "num_hidden_layers 12 vs 2")


def test_a_base_model_of_the_same_shape_loads(trained_tiny_model_dir, tmp_path):
    base = _base_with(tmp_path, trained_tiny_model_dir, id2label={"0": "a", "1": "b"})  # a new head is fine
    model = _train_output(trained_tiny_model_dir, tmp_path / "run", base_model=str(base))
    assert resolve_artifact(str(model)).manifest_conflicts() == []


def test_a_data_card_that_is_not_the_recorded_one_is_refused(cli, trained_tiny_model_dir, texts, tmp_path):
    from finsight.io import sha256_file

    card = tmp_path / "data" / DATA_CARD
    card.parent.mkdir()
    card.write_text(json.dumps({"rows": 120}))
    model = _train_output(trained_tiny_model_dir, tmp_path / "run", data_card_sha256=sha256_file(card))
    shutil.copy(card, tmp_path / "run" / DATA_CARD)  # the run keeps the card it was trained on
    assert resolve_artifact(str(model)).manifest_conflicts() == []

    (tmp_path / "run" / DATA_CARD).write_text(json.dumps({"rows": 999}))  # another prep's card
    result = cli("analyze", texts, "--model", model, "--backend", "torch", "--out", tmp_path / "o.csv")
    assert result.exit_code == 1
    _one_error_line(result.stderr, "data_card_sha256", str(tmp_path / "run" / DATA_CARD))


def test_labels_the_manifest_and_config_json_disagree_on_are_refused(trained_tiny_model_dir, tmp_path):
    from finsight.predict import load_predictor

    model = _train_output(trained_tiny_model_dir, tmp_path / "run",
                          labels=["positive", "neutral", "negative"])
    with pytest.raises(ModelError, match=r"labels \['positive', 'neutral', 'negative'\] vs config.json"):
        load_predictor(str(model), load_settings(flags={"predict.backend": "torch"}))


def test_register_uses_the_same_check(export):
    from finsight.publish.register import check_artifact

    _flip_byte(export / "model.onnx")
    with pytest.raises(ModelError, match="changed: model.onnx"):
        check_artifact(resolve_artifact(str(export)))


def test_the_export_beside_a_model_is_found_from_stamps_and_lost_when_the_model_changes(
        pristine, tmp_path, counted, monkeypatch):
    """``--backend auto`` on a model dir matches the export's source_sha256 against the model's
    files on every start; the stamps spare hashing the weights, not the check."""
    monkeypatch.setattr(artifacts, "_RACY_NS", 0)
    run = tmp_path / "run"
    shutil.copytree(pristine.parent / "model", run / "model")
    shutil.copytree(pristine, run / "export-onnx")
    model = resolve_artifact(str(run / "model"))
    assert model.export_beside("onnx") is not None and "model.safetensors" in counted
    counted.clear()
    assert model.export_beside("onnx") is not None and counted == []

    import time

    time.sleep(0.05)
    _flip_byte(run / "model" / "model.safetensors", offset=4096)  # retrained in place, same size
    assert model.export_beside("onnx") is None and counted == ["model.safetensors"]
