"""`finsight triton`: repository configs against Triton's proto, and a real tritonserver serving raw text.

The server is the tritonserver bundled in nvidia-pytriton, run from the server venv that
`make install` builds (<venv>-triton: numpy<2, onnxruntime, tokenizers). That bundle has no
onnxruntime backend, so the served repository uses --classifier-backend python.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from predict_helpers import make_onnx_export

from finsight.config import load_settings
from finsight.errors import BackendError, ConfigError
from finsight.samples import SAMPLE_SENTENCES
from finsight.labels import LABELS
from finsight.triton.repository import model_configs, parse_config, shipped_modules
from finsight.triton.server import TritonServer, failure_reason, free_port, server_ready

PROBS = [f"p_{label}" for label in LABELS]


# ---------------------------------------------------------------- configs (no server)


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
@pytest.mark.parametrize("inputs", [["input_ids", "attention_mask", "token_type_ids"],
                                    ["input_ids", "attention_mask"]])
def test_every_config_parses_against_model_config_proto(kind, backend, inputs):
    from tritonclient.grpc import model_config_pb2 as pb2

    settings = load_settings(flags={
        "triton.kind": kind, "triton.classifier_backend": backend, "triton.max_batch_size": 16,
        "triton.instances": 3, "triton.preferred_batch_sizes": [4, 8, 64], "triton.tensorrt_fp16": True})
    configs = model_configs("fin", settings.triton, inputs=inputs, max_length=40, label_order=[2, 0, 1])
    parsed = {name: parse_config(text, where=name) for name, text in configs.items()}
    assert set(parsed) == {"fin", "fin_tokenizer", "fin_model", "fin_postprocess"}
    for name, config in parsed.items():
        assert config.name == name and config.max_batch_size == 16
    model = parsed["fin_model"]
    assert [i.name for i in model.input] == inputs
    assert all(list(i.dims) == [-1] and i.data_type == pb2.TYPE_INT64 for i in model.input)
    assert [(o.name, list(o.dims)) for o in model.output] == [("logits", [3])]
    assert list(model.dynamic_batching.preferred_batch_size) == [4, 8]  # 64 > max_batch_size
    group = model.instance_group[0]
    assert group.count == 3
    assert group.kind == (pb2.ModelInstanceGroup.KIND_GPU if kind == "gpu" else pb2.ModelInstanceGroup.KIND_CPU)
    if backend == "onnxruntime":
        assert model.platform == "onnxruntime_onnx" and not model.backend
    else:
        assert model.backend == "python" and not model.platform
    accelerators = model.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == (["tensorrt"] if kind == "gpu" and backend == "onnxruntime" else [])
    tokenizer = parsed["fin_tokenizer"]
    assert [(i.name, i.data_type, list(i.dims)) for i in tokenizer.input] == [("TEXT", pb2.TYPE_STRING, [1])]
    assert [o.name for o in tokenizer.output] == inputs
    assert tokenizer.parameters["max_length"].string_value == "40"
    post = parsed["fin_postprocess"]
    assert json.loads(post.parameters["label_order"].string_value) == [2, 0, 1]
    assert json.loads(post.parameters["labels"].string_value) == list(LABELS)
    ensemble = parsed["fin"]
    assert ensemble.platform == "ensemble"
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["fin_tokenizer", "fin_model", "fin_postprocess"]
    # every tensor a step reads is the ensemble's input or an earlier step's output
    available = {"TEXT"}
    for step in steps:
        assert set(step.input_map.values()) <= available, step.model_name
        available |= set(step.output_map.values())
    assert {o.name for o in ensemble.output} <= available


def test_a_wrong_config_does_not_parse():
    with pytest.raises(ConfigError, match=r"x/config.pbtxt.*max_batch_sise"):
        parse_config('name: "x"\nmax_batch_sise: 4\n', where="x/config.pbtxt")
    with pytest.raises(ConfigError, match="KIND_TPU"):
        parse_config('name: "x"\ninstance_group [ { kind: KIND_TPU } ]\n')


def test_failure_reason_prefers_the_models_that_failed_to_load():
    log = "\n".join([
        'I1126 03:26:49.192231 11149 grpc_server.cc:2558] "Started GRPCInferenceService"',
        'E1126 03:26:50.000001 11149 pb_stub.cc:1] "CudaDriverHelper has not been initialized."',
        'E1126 03:26:50.000002 11149 model_lifecycle.cc:654] "failed to load \'m\' version 1: '
        'Internal: bad file\\n\\nAt:\\n  model.py(29)"',
    ])
    assert failure_reason(log) == "failed to load 'm' version 1: Internal: bad file"
    assert failure_reason("just a line\n") == "just a line"


# ---------------------------------------------------------------- a real tritonserver


@pytest.fixture(scope="module")
def built(tmp_path_factory, trained_tiny_model_dir):
    """A model dir with a valid ONNX export beside it, and its repository (built by the CLI from
    the model dir); no server."""
    from typer.testing import CliRunner

    from finsight.cli import app

    root = tmp_path_factory.mktemp("triton")
    shutil.copytree(trained_tiny_model_dir, root / "model")
    make_onnx_export(root / "model", root / "export-onnx")
    repo = root / "repo"
    result = CliRunner().invoke(app, ["triton", "build", str(root / "model"), "--repo", str(repo),
                                      "--classifier-backend", "python", "--json"])
    assert result.exit_code == 0, result.output
    return {"root": root, "repo": repo, "export": root / "export-onnx", "manifest": json.loads(result.stdout)}


@pytest.fixture(scope="module")
def served(built):
    """``built``, and a running tritonserver on its repository."""
    server = TritonServer(built["repo"], load_settings())
    with server:
        yield built | {"server": server}


@pytest.fixture(scope="module")
def texts():
    """Short phrases, headlines and filings longer than max_length (64 tokens)."""
    return list(SAMPLE_SENTENCES)


def test_build_writes_the_repository_from_the_export_beside_the_model(built):
    manifest, repo = built["manifest"], built["repo"]
    assert manifest["source"] == str(built["export"].resolve())
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == manifest["models"]
    for model in manifest["models"]:
        parse_config((repo / model / "config.pbtxt").read_text(), where=model)
    perf = json.loads((repo / "perf_inputs.json").read_text())
    assert [row["TEXT"]["content"][0] for row in perf["data"]] == list(SAMPLE_SENTENCES)
    assert "EXECUTION_ENV_PATH" in (repo / "README.md").read_text()


def test_the_tokenizer_model_gives_the_local_predictors_token_ids(served, texts):
    import tritonclient.http as httpclient

    from finsight.config import load_settings
    from finsight.predict import load_predictor

    tokenizer_dir = served["repo"] / "finsight_tokenizer" / "1"
    for relative, module in shipped_modules().items():
        assert (tokenizer_dir / relative).read_bytes() == module.read_bytes(), relative
    postprocess_dir = served["repo"] / "finsight_postprocess" / "1"
    for relative, module in shipped_modules("postprocess").items():  # one label rule too
        assert (postprocess_dir / relative).read_bytes() == module.read_bytes(), relative
    local = load_predictor(str(served["export"]), load_settings(), backend="onnx")
    assert local.encode(texts).truncated.any()  # long texts are in the set
    client = httpclient.InferenceServerClient(served["server"].http_url)
    for batch in (texts[:1], texts[-1:], texts[-40:]):  # the last ones run past max_length
        item = httpclient.InferInput("TEXT", [len(batch), 1], "BYTES")
        item.set_data_from_numpy(np.array([[t.encode()] for t in batch], dtype=object))
        result = client.infer("finsight_tokenizer", [item])
        expected = local.encoder(batch)
        assert sorted(expected) == sorted(o["name"] for o in result.get_response()["outputs"])
        for name, array in expected.items():
            np.testing.assert_array_equal(result.as_numpy(name), array, err_msg=name)
    client.close()


def test_the_ensemble_takes_raw_text_and_gives_probabilities_and_label(served, texts):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(served["server"].grpc_url)
    batch = texts[:5] + texts[-3:]
    item = grpcclient.InferInput("TEXT", [len(batch), 1], "BYTES")
    item.set_data_from_numpy(np.array([[t.encode()] for t in batch], dtype=object))
    result = client.infer("finsight", [item])
    probs = result.as_numpy("probabilities")
    assert probs.shape == (len(batch), len(LABELS))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    labels = [label.decode() for label in result.as_numpy("label").reshape(-1)]
    assert labels == [LABELS[i] for i in probs.argmax(axis=1)]
    client.close()


def test_rebuilding_under_another_name_leaves_only_the_new_models(cli, built, tmp_path):
    repo = tmp_path / "repo"
    for name in ("first", "second"):
        result = cli("triton", "build", built["export"], "--repo", repo, "--name", name)
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == [
        "second", "second_model", "second_postprocess", "second_tokenizer"]
    assert (repo / "second" / "1").is_dir()  # the ensemble's empty version directory stays


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_analyze_through_triton_matches_onnx(cli, served, texts, tmp_path, protocol):
    frame = pd.DataFrame({"id": range(len(texts)), "text": texts}).sample(frac=1.0, random_state=1)
    frame.to_csv(tmp_path / "in.csv", index=False)
    export = served["export"]
    reference = tmp_path / "onnx.csv"
    result = cli("analyze", tmp_path / "in.csv", "--out", reference, "--model", export, "--backend", "onnx")
    assert result.exit_code == 0, result.output
    expected = pd.read_csv(reference)
    server = served["server"]
    for batch_size in ("1", "7"):
        out = tmp_path / f"triton-{batch_size}.csv"
        result = cli("--set", f"triton.url={server.url(protocol)}", "--set", f"triton.protocol={protocol}",
                     "analyze", tmp_path / "in.csv", "--out", out, "--model", export, "--backend", "triton",
                     "--batch-size", batch_size, "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["backend"] == "triton" and summary["truncated"] > 0
        got = pd.read_csv(out)
        assert got["id"].tolist() == expected["id"].tolist()
        assert got["label"].tolist() == expected["label"].tolist()
        np.testing.assert_allclose(got[PROBS].to_numpy(), expected[PROBS].to_numpy(), atol=1e-4)


def test_triton_check_passes_and_stops_its_server(cli, served):
    result = cli("triton", "check", "--repo", served["repo"], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["started_server"] and report["disagreements"] == 0
    assert report["max_abs_diff"] <= report["max_abs_diff_limit"]
    assert report["truncated_rows"] > 0 and set(report["by_batch_size"]) == {"1", str(report["rows"])}
    port = int(report["server"].rsplit(":", 1)[1])
    assert not server_ready(f"127.0.0.1:{port}")
    # against the running server too (--url), over gRPC
    result = cli("triton", "check", "--repo", served["repo"], "--url", served["server"].grpc_url,
                 "--protocol", "grpc")
    assert result.exit_code == 0, result.output
    assert "pass" in result.stdout


def test_a_dead_url_is_one_clear_error(cli, built, tmp_path):
    (tmp_path / "in.csv").write_text("text\nProfit rose.\n")
    for protocol in ("http", "grpc"):
        result = cli("--set", f"triton.url=127.0.0.1:{free_port()}", "--set", f"triton.protocol={protocol}",
                     "analyze", tmp_path / "in.csv", "--model", built["export"], "--backend", "triton")
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "no Triton server answers at 127.0.0.1:" in lines[0], result.stderr
        assert "Traceback" not in result.output


def test_a_model_that_fails_to_load_fails_the_check_with_the_servers_reason(cli, built, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(built["repo"], broken)
    (broken / "finsight_model" / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    result = cli("triton", "check", "--repo", broken)
    assert result.exit_code == 1
    assert "failed to load 'finsight_model'" in result.stderr and "model.onnx" in result.stderr


def test_server_stops_by_pid_with_its_python_stubs(built):
    server = TritonServer(built["repo"], load_settings())
    with server:
        assert server_ready(server.http_url)
        pid = server.pid
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):  # no stub of its process group is left either
        os.killpg(pid, signal.SIGCONT)
    assert not server_ready(server.http_url) and server.workdir is None


def test_a_missing_server_env_is_a_backend_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no tritonserver on PATH
    settings = load_settings(flags={"triton.server_env": tmp_path / "nowhere"})
    with pytest.raises(BackendError, match="make install"):
        TritonServer(tmp_path, settings)


# The refusals come before any server would start: they need the export, not a tritonserver.


def test_a_non_finsight_repository_is_refused(cli, built, tmp_path):
    (tmp_path / "repo").mkdir()
    result = cli("triton", "check", "--repo", tmp_path / "repo")
    assert result.exit_code == 1 and "finsight triton build" in result.stderr
    (tmp_path / "repo" / "other.txt").write_text("x")
    result = cli("triton", "build", built["export"], "--repo", tmp_path / "repo")
    assert result.exit_code == 1 and "was not written by finsight" in result.stderr
    assert not (tmp_path / "repo" / "finsight").exists()


def test_a_model_dir_without_an_export_is_refused(cli, built, tmp_path):
    shutil.copytree(built["root"] / "model", tmp_path / "alone" / "model")
    result = cli("triton", "build", tmp_path / "alone" / "model", "--repo", tmp_path / "repo")
    assert result.exit_code == 1 and "finsight export" in result.stderr
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_server_killed_mid_run_ends_analyze_in_one_line(built, tmp_path, protocol):
    """The Triton server crashes (SIGKILL) while `finsight analyze --backend triton` streams a
    file through it: one red line and exit 1, and no traceback from the client's threads
    (the HTTP client runs on gevent, whose hub printed every failed call's traceback)."""
    import subprocess
    import sys
    import time
    import urllib.request

    texts = [f"{text} ({i})" for i in range(600) for text in SAMPLE_SENTENCES[:40]]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    server = TritonServer(built["repo"], load_settings())
    with server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "finsight", "--set", f"triton.url={server.url(protocol)}",
             "--set", f"triton.protocol={protocol}", "analyze", str(tmp_path / "in.csv"),
             "--out", str(tmp_path / "out.csv"), "--model", str(built["export"]), "--backend", "triton"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stats = f"http://{server.http_url}/v2/models/finsight/stats"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            counts = json.load(urllib.request.urlopen(stats, timeout=2))["model_stats"]
            if any(int(m.get("inference_count", 0)) >= 64 for m in counts):
                break  # texts are flowing: crash the server now
            time.sleep(0.05)
        assert proc.poll() is None, "analyze finished before the server could be killed: use more rows"
        os.killpg(server.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert not (tmp_path / "out.csv").exists()  # nothing partial is written
