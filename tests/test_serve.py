"""`finsight serve` in-process: every endpoint through litestar's TestClient, limits, auth,
rate limit, backpressure, batching and graceful shutdown (the real predictor on the tiny model)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import numpy as np
import pytest

pytest.importorskip("litestar")

from conftest import EXAMPLES  # noqa: E402
from serve_helpers import Gated, metric, serve_settings  # noqa: E402

TEXTS = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.",
         "The company warned that sales would fall sharply.",
         "The board meets on Tuesday.",
         "Shares jumped after the upbeat forecast."]


@pytest.fixture(scope="module")
def predictor(trained_tiny_model_dir):
    from finsight.predict import load_predictor
    from finsight.serve.defaults import for_serving

    # As `finsight serve` loads it: with the serving defaults (on CPU, small padded batches).
    return load_predictor(str(trained_tiny_model_dir), for_serving(serve_settings(trained_tiny_model_dir)))


def client_for(model_dir, predictor, **serve):
    from litestar.testing import TestClient

    from finsight.serve import create_app

    return TestClient(create_app(serve_settings(model_dir, **serve), predictor))


def wait_ready(client, timeout=30.0):
    started = time.monotonic()
    while client.get("/ready").status_code != 200:
        assert time.monotonic() - started < timeout, "/ready never turned 200"
        time.sleep(0.05)


def test_every_endpoint(trained_tiny_model_dir, predictor):
    with client_for(trained_tiny_model_dir, predictor) as client:
        assert client.get("/health").json() == {"status": "ok"}
        wait_ready(client)
        assert client.get("/ready").json() == {"status": "ready"}

        info = client.get("/v1/model").json()
        assert info["backend"] == "torch" and info["labels"] == ["negative", "neutral", "positive"]
        assert info["max_length"] == predictor.max_length and len(info["version"]) == 12

        one = client.post("/v1/predict", json={"text": TEXTS[0]})
        assert one.status_code == 200  # not litestar's default 201
        body = one.json()
        assert body["label"] in info["labels"] and body["cached"] is False and body["error"] is None
        probs = body["probabilities"]
        assert body["confidence"] == pytest.approx(max(probs.values()))
        assert body["sentiment"] == pytest.approx(probs["positive"] - probs["negative"])
        assert body["model"] == {"name": info["name"], "version": info["version"]}
        again = client.post("/v1/predict", json={"text": TEXTS[0]}).json()
        assert again["cached"] is True and again["probabilities"] == probs

        batch = client.post("/v1/predict/batch", json={"texts": [TEXTS[1], "  ", TEXTS[0]]}).json()
        assert [r["cached"] for r in batch["results"]] == [False, False, True]
        assert batch["results"][1] == {"label": None, "confidence": None, "probabilities": None,
                                       "sentiment": None, "cached": False, "error": "empty text"}
        assert batch["results"][2]["probabilities"] == probs  # same order as sent

        docs = client.post("/v1/analyze", json={"documents": [" ".join(TEXTS), ""]}).json()
        assert docs["results"][0]["n_sentences"] == len(TEXTS) and docs["results"][0]["label"] in info["labels"]
        assert docs["results"][1]["error"] == "empty text"

        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "http://" not in page.text and "https://" not in page.text  # no external assets

        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert metric(metrics.text, "finsight_requests_total", path="/v1/predict", status_code="200") >= 2
        assert metric(metrics.text, "finsight_cache_hits_total") >= 2

        schema = client.get("/schema/openapi.json").json()
        assert "/metrics" not in schema["paths"] and "/" not in schema["paths"]
        for path in ("/v1/predict", "/v1/predict/batch", "/v1/analyze"):
            assert {"400", "401", "413", "422", "429", "503"} <= set(schema["paths"][path]["post"]["responses"])
        assert schema["components"]["schemas"]["PredictRequest"]["additionalProperties"] is False
        assert client.get("/schema").status_code == 200  # the docs page


def test_outputs_equal_analyze(trained_tiny_model_dir, predictor, tmp_path, headlines):
    import pandas as pd

    from finsight.analyze import analyze_files
    from finsight.config import load_settings

    texts = headlines["text"].head(24).tolist() + [""]
    pd.DataFrame({"text": texts}).to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    documents = [json.loads(line)["text"] for line in (EXAMPLES / "filings.jsonl").read_text().splitlines()][:6]
    pd.DataFrame({"text": documents}).to_json(tmp_path / "docs.jsonl", orient="records", lines=True)

    def analyze(name, mode):
        out = tmp_path / f"{name}.out.parquet"
        settings = load_settings(flags={"analyze.out": out, "analyze.mode": mode})
        analyze_files([tmp_path / f"{name}.jsonl"], settings, predictor=predictor)
        return pd.read_parquet(out)

    with client_for(trained_tiny_model_dir, predictor, cache_size=0) as client:
        served = client.post("/v1/predict/batch", json={"texts": texts}).json()["results"]
        served_docs = client.post("/v1/analyze", json={"documents": documents}).json()["results"]
    for expected, got in ((analyze("in", "sentence"), served), (analyze("docs", "document"), served_docs)):
        assert len(expected) == len(got)
        for row, result in zip(expected.itertuples(), got):
            if result["error"]:
                assert row.error == result["error"] and pd.isna(row.label)
                continue
            assert row.label == result["label"]
            for label, p in result["probabilities"].items():
                assert getattr(row, f"p_{label}") == pytest.approx(p, abs=1e-5)
            assert row.sentiment == pytest.approx(result["sentiment"], abs=1e-5)
    assert [r["n_sentences"] for r in served_docs] == expected["n_sentences"].tolist()


def test_limits_and_bad_bodies(trained_tiny_model_dir, predictor):
    with client_for(trained_tiny_model_dir, predictor, max_text_chars=40, max_texts_per_request=3,
                    max_document_chars=60, max_body_bytes=2048) as client:
        long = client.post("/v1/predict", json={"text": "x" * 41})
        assert long.status_code == 422
        assert long.json()["limit"] == "serve.max_text_chars" and long.json()["value"] == 40
        many = client.post("/v1/predict/batch", json={"texts": ["a"] * 4})
        assert many.status_code == 422 and many.json()["limit"] == "serve.max_texts_per_request"
        assert client.post("/v1/analyze", json={"documents": ["a", "y" * 41]}).status_code == 200
        docs = client.post("/v1/analyze", json={"documents": ["a", "y" * 61]})
        assert docs.status_code == 422 and docs.json()["limit"] == "serve.max_document_chars"
        assert docs.json()["value"] == 60
        big = client.post("/v1/predict", content=b'{"text": "' + b"x" * 4000 + b'"}',
                          headers={"content-type": "application/json"})
        assert big.status_code == 413
        assert big.json()["limit"] == "serve.max_body_bytes" and big.json()["value"] == 2048
        for body in (b"{not json", b'{"text": 3}', b'{"text": "a", "extra": 1}', b'{"texts": "a"}', b"[]",
                     b'{"text": null}', b""):
            response = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
            assert response.status_code == 400, (body, response.text)
            assert response.json()["status_code"] == 400
        assert client.post("/v1/predict/batch", json={"texts": [1, 2]}).status_code == 400


def test_api_keys(trained_tiny_model_dir, predictor, tmp_path):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# ops team\nsecond-key\n\n")
    with client_for(trained_tiny_model_dir, predictor, api_keys=["first-key"], api_keys_file=str(keys_file)) as client:
        missing = client.post("/v1/predict", json={"text": "profit rose"})
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
        assert "x-request-id" in missing.headers
        wrong = client.post("/v1/predict", json={"text": "profit rose"}, headers={"X-API-Key": "first-kez"})
        assert wrong.status_code == 401
        for key in ("first-key", "second-key"):
            assert client.post("/v1/predict", json={"text": "profit rose"},
                               headers={"X-API-Key": key}).status_code == 200
        assert client.get("/v1/model").status_code == 401
        for path in ("/health", "/metrics", "/", "/schema/openapi.json"):
            assert client.get(path).status_code == 200, path
        schema = client.get("/schema/openapi.json").json()
        assert schema["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
        assert schema["paths"]["/v1/predict"]["post"]["security"] == [{"ApiKey": []}]
        assert "security" not in schema["paths"]["/health"]["get"] and "security" not in schema
        text = client.get("/metrics").text
        assert metric(text, "finsight_requests_total", path="/v1/predict", status_code="401") >= 2


def test_rate_limit_per_key(trained_tiny_model_dir, predictor):
    with client_for(trained_tiny_model_dir, predictor, api_keys=["a", "b"], rate_limit="3/minute") as client:
        codes = [client.get("/v1/model", headers={"X-API-Key": "a"}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = client.get("/v1/model", headers={"X-API-Key": "a"})
        assert limited.status_code == 429 and limited.headers["RateLimit-Limit"] == "3"
        assert limited.json()["status_code"] == 429
        assert client.get("/v1/model", headers={"X-API-Key": "b"}).status_code == 200  # its own bucket
        assert all(client.get("/health").status_code == 200 for _ in range(5))  # open paths: no limit
        text = client.get("/metrics").text
        assert metric(text, "finsight_requests_total", path="/v1/model", status_code="429") >= 2


def test_request_id_and_cors(trained_tiny_model_dir, predictor):
    with client_for(trained_tiny_model_dir, predictor, cors_origins=["https://app.example"]) as client:
        assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
        generated = client.get("/no/such/path")
        assert generated.status_code == 404 and re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
        # An id that is not a sane token (here a control character, DEL) is replaced by a fresh
        # generated one: neither echoed nor cleaned up ("bad-id" alone would be accepted).
        assert client.get("/health", headers={"X-Request-ID": "bad-id"}).headers["x-request-id"] == "bad-id"
        replaced = client.get("/health", headers={"X-Request-ID": "bad-id\x7f"}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", replaced) and replaced != generated.headers["x-request-id"]
        assert replaced[:16] == generated.headers["x-request-id"][:16]  # this process's prefix
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type,x-api-key"}
        allowed = client.options("/v1/predict", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = client.options("/v1/predict", headers={**preflight, "Origin": "https://evil.example"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_full_queue_answers_503_then_batches(trained_tiny_model_dir, predictor):
    import httpx

    from finsight.serve import create_app
    from finsight.serve.service import Service

    gated = Gated(predictor)
    settings = serve_settings(trained_tiny_model_dir, max_queue=3, cache_size=0, max_wait_ms=0)
    service = Service.build(gated, settings)
    app = create_app(settings, gated, service=service)

    async def until(condition, timeout=20.0):
        started = time.monotonic()
        while not condition():
            assert time.monotonic() - started < timeout
            await asyncio.sleep(0.01)

    async def scenario():
        # httpx's ASGI transport runs the app in this loop, so requests really are concurrent;
        # it skips the lifespan, so the batcher is started here.
        service.batcher.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve.test") as client:
            post = lambda text: asyncio.create_task(client.post("/v1/predict", json={"text": text}))  # noqa: E731
            first = post("first")
            await until(lambda: gated.calls == [1])  # the model is busy with "first"
            queued = [post(f"queued {i}") for i in range(3)]
            await until(lambda: service.batcher.depth == 3)
            assert service.batcher.in_flight == 4  # the batcher counts the requests it holds
            refused = await client.post("/v1/predict", json={"text": "one too many"})
            gated.gate.set()
            answers = await asyncio.gather(first, *queued)
            assert service.batcher.in_flight == 0  # the refused request was never counted
            metrics = (await client.get("/metrics")).text
        await service.batcher.stop()
        return refused, answers, metrics

    refused, answers, metrics = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["limit"] == "serve.max_queue"
    assert [a.status_code for a in answers] == [200] * 4
    assert gated.calls == [1, 3]  # the three queued requests shared one model call
    assert metric(metrics, "finsight_requests_total", path="/v1/predict", status_code="503") >= 1
    assert metric(metrics, "finsight_queue_rejected_total") >= 1


def test_shutdown_finishes_queued_requests(trained_tiny_model_dir, predictor):
    from finsight.serve.service import Service

    gated = Gated(predictor)
    service = Service.build(gated, serve_settings(trained_tiny_model_dir, max_batch_size=2, cache_size=0))

    async def scenario():
        service.batcher.start()
        tasks = [asyncio.create_task(service.score([f"headline {i}"])) for i in range(5)]
        while not gated.calls:
            await asyncio.sleep(0.01)
        stopping = asyncio.create_task(service.batcher.stop())
        await asyncio.sleep(0.1)
        assert not stopping.done()  # waits for the queued requests
        gated.gate.set()
        await stopping
        return [task.result() for task in tasks if task.done()]

    results = asyncio.run(scenario())
    assert len(results) == 5 and all(r[0].label is not None for r in results)
    assert sum(gated.calls) == 5 and max(gated.calls) <= 2
    expected = predictor.predict([f"headline {i}" for i in range(5)])
    got = np.array([[getattr(r[0].probabilities, k) for k in ("negative", "neutral", "positive")] for r in results])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_serving_defaults_apply_only_to_unset_keys(tmp_path):
    from finsight.config import load_settings
    from finsight.serve.defaults import for_serving

    cpu = {"predict.device": "cpu", "predict.model": str(tmp_path)}
    served = for_serving(load_settings(flags=cpu))
    assert served.predict.spin_wait is False and served.predict.batch_size == served.serve.model_batch_size
    assert served.sources["predict.spin_wait"] == "default"  # a copy: where values came from is kept
    chosen = for_serving(load_settings(flags={**cpu, "predict.spin_wait": True, "predict.batch_size": 32}))
    assert chosen.predict.spin_wait is True and chosen.predict.batch_size == 32
    gpu = for_serving(load_settings(flags={**cpu, "predict.device": "cuda"}))
    assert gpu.predict.batch_size is None  # a GPU keeps the predictor's own default (1024)
    triton = for_serving(load_settings(flags={**cpu, "predict.device": "cuda", "predict.backend": "triton"}))
    assert triton.predict.batch_size == triton.serve.model_batch_size  # the client batches on CPU


def test_workers_get_the_settings_with_their_sources(tmp_path, monkeypatch):
    """`--workers > 1`: each worker rebuilds the settings from the environment; a
    predict.spin_wait the user set must survive it, and the default must still become False."""
    from finsight.config import load_settings
    from finsight.serve import server
    from finsight.serve.defaults import for_serving

    flags = {"predict.device": "cpu", "predict.model": str(tmp_path), "serve.workers": 2}
    parents = {expected: load_settings(flags={**flags, "predict.spin_wait": user})
               for user, expected in ((True, True), (None, False))}
    monkeypatch.setenv(server.SETTINGS_ENV, "")  # removed again after the test
    for expected, parent in parents.items():
        server.share_with_workers(parent)
        worker = server.worker_settings()
        assert worker.model_dump() == parent.model_dump() and worker.sources == parent.sources
        assert for_serving(worker).predict.spin_wait is expected


def test_bad_settings_are_config_errors(tmp_path):
    from finsight.config import load_settings
    from finsight.errors import ConfigError
    from finsight.serve.middleware import load_api_keys

    with pytest.raises(ConfigError, match="serve.rate_limit"):
        load_settings(flags={"serve.rate_limit": "10/fortnight"})
    assert load_settings(flags={"serve.rate_limit": "10/minutes"}).serve.rate_limit == "10/minutes"
    with pytest.raises(ConfigError, match="serve.api_keys_file"):
        load_api_keys(load_settings(flags={"serve.api_keys_file": str(tmp_path / "missing")}).serve)


def test_serve_cli_refuses_a_missing_model(cli, tmp_path):
    result = cli("serve", "--model", tmp_path / "nope", "--port", "0")
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "nope" in result.stderr


def test_serving_an_onnx_export_needs_no_torch_transformers_or_pandas(trained_tiny_model_dir, tmp_path):
    """deploy/docker/Dockerfile installs finsight without torch, transformers or pandas: serving
    an ONNX export must not import them."""
    import subprocess
    import sys

    from predict_helpers import make_onnx_export

    export = make_onnx_export(trained_tiny_model_dir, tmp_path / "export-onnx")
    code = f"""
import sys
from litestar.testing import TestClient
from finsight.cli import app  # the CLI as the container's entry point loads it
from finsight.config import load_settings
from finsight.serve.server import build_app
settings = load_settings(flags={{"predict.model": {str(export)!r}, "predict.device": "cpu"}})
with TestClient(build_app(settings)) as client:
    assert client.post("/v1/predict/batch", json={{"texts": ["Profit rose.", ""]}}).status_code == 200
    assert client.post("/v1/analyze", json={{"documents": ["Profit rose. Sales fell."]}}).status_code == 200
    assert client.get("/v1/model").json()["backend"] == "onnx"
    session = client.app.dependencies["service"].dependency().predictor.session
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "transformers", "pandas", "pyarrow",
                                                          "mlflow", "lightning", "datasets", "matplotlib"}})
print("HEAVY", heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HEAVY []" in result.stdout, result.stdout


def test_ready_waits_for_warm_up(trained_tiny_model_dir, predictor):
    import httpx

    from finsight.serve import create_app
    from finsight.serve.service import Service

    gated = Gated(predictor)
    settings = serve_settings(trained_tiny_model_dir, warmup_texts=4)
    service = Service.build(gated, settings)
    app = create_app(settings, gated, service=service)

    async def scenario():
        service.batcher.start()
        warming = asyncio.create_task(service.warm_up())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve.test") as client:
            while not gated.calls:
                await asyncio.sleep(0.01)
            cold = await client.get("/ready")
            alive = await client.get("/health")
            gated.gate.set()
            await warming
            warm = await client.get("/ready")
        await service.batcher.stop()
        return cold, alive, warm

    cold, alive, warm = asyncio.run(scenario())
    assert cold.status_code == 503 and cold.json() == {"status": "warming up"} and cold.headers["retry-after"]
    assert alive.status_code == 200
    assert warm.status_code == 200 and gated.calls == [1, 4]
