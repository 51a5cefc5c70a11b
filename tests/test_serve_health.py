"""Deadlines and backend health: `serve.request_timeout_s` (504, a queued request dropped from its
batch), the circuit breaker (`serve.breaker_failures`, `serve.breaker_reset_s`, /ready 503 while
open, the half-open probe), GET /health/detailed and the metrics an operator needs.

The batcher's queue-drop rule is tested in-process (a fake predictor held at a gate, the real
MicroBatcher); the rest against real `finsight serve` processes, and the kill/restart and
slow-backend cases against a real tritonserver that is killed, restarted and SIGSTOPped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import threading
import time

import httpx
import numpy as np
import pytest

pytest.importorskip("litestar")

from serve_helpers import LiveServer, metric, serve_settings  # noqa: E402

from finsight.errors import BackendError  # noqa: E402
from finsight.serve.batching import DeadlineExceeded, MicroBatcher, Observer  # noqa: E402
from finsight.serve.breaker import CLOSED, HALF_OPEN, OPEN, BackendUnavailable, CircuitBreaker  # noqa: E402


class SlowFake:
    """A predictor whose first call waits at a gate; it records every batch it is given."""

    def __init__(self):
        self.gate = threading.Event()
        self.batches: list[list[str]] = []

    def predict(self, texts):
        self.batches.append(list(texts))
        if len(self.batches) == 1 and not self.gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        return np.tile(np.array([[0.2, 0.3, 0.5]], dtype=np.float32), (len(texts), 1))


class Counting(Observer):
    def __init__(self):
        self.dropped_texts, self.calls = 0, []

    def dropped(self, texts):
        self.dropped_texts += texts

    def call(self, seconds, ok):
        self.calls.append(ok)


# ---------------------------------------------------------------- in-process: the batcher


def test_a_request_past_its_deadline_is_dropped_from_the_next_batch():
    fake, seen = SlowFake(), Counting()

    async def scenario():
        batcher = MicroBatcher(fake, max_batch_size=64, max_wait_ms=0, max_queue=8, timeout_s=0.3,
                               observer=seen)
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(["in flight"]))
        while not fake.batches:  # the first batch is at the model, which is stuck
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        with pytest.raises(DeadlineExceeded, match="serve.request_timeout_s=0.3"):
            await batcher.predict(["queued", "behind it"])
        waited = time.perf_counter() - started
        with pytest.raises(DeadlineExceeded):
            await first  # its text was already being scored: it still gets its 504 in time
        fake.gate.set()  # the model answers; the next batch runs
        after = await batcher.predict(["after"])
        await batcher.stop()
        return waited, after

    waited, after = asyncio.run(scenario())
    assert 0.25 <= waited < 1.0
    assert fake.batches == [["in flight"], ["after"]]  # the expired request's texts never ran
    assert seen.dropped_texts == 2 and seen.calls == [True, True]
    assert after.shape == (1, 3)


def test_a_document_call_waiting_for_the_thread_is_cancelled_unrun():
    fake, ran = SlowFake(), []

    async def scenario():
        batcher = MicroBatcher(fake, max_batch_size=64, max_wait_ms=0, max_queue=8, timeout_s=0.3)
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(["in flight"]))
        while not fake.batches:
            await asyncio.sleep(0.01)
        with pytest.raises(DeadlineExceeded):
            await batcher.run(ran.append, "document")
        fake.gate.set()
        with pytest.raises(DeadlineExceeded):
            await first
        await batcher.run(ran.append, "later")
        await batcher.stop()

    asyncio.run(scenario())
    assert ran == ["later"]


def test_a_predictor_exception_is_a_backend_error_and_counts_for_the_breaker():
    class Broken:
        def predict(self, texts):
            raise RuntimeError("ORT: invalid graph\nmore")

    breaker = CircuitBreaker(failures=2, reset_s=60)

    async def scenario():
        batcher = MicroBatcher(Broken(), max_batch_size=8, max_wait_ms=0, max_queue=8, breaker=breaker)
        batcher.start()
        for _ in range(2):
            with pytest.raises(BackendError, match=r"^the model call failed: RuntimeError: ORT: invalid graph$"):
                await batcher.predict(["x"])
        with pytest.raises(BackendUnavailable, match=r"2 consecutive failures.*retry after (59|60) s"):
            await batcher.predict(["x"])
        await batcher.stop()

    asyncio.run(scenario())
    assert breaker.state == OPEN and breaker.last_error.message.startswith("ORT: invalid graph")


def test_breaker_opens_probes_once_and_closes():
    now = [100.0]
    breaker = CircuitBreaker(failures=3, reset_s=5, clock=lambda: now[0])
    for _ in range(2):
        breaker.failure(RuntimeError("down"))
    breaker.success()  # consecutive failures only
    for _ in range(3):
        breaker.admit()
        breaker.failure(RuntimeError("down"))
    assert breaker.state == OPEN and not breaker.probe_due()
    with pytest.raises(BackendUnavailable) as refused:
        breaker.admit()
    assert refused.value.retry_after == 5
    now[0] += 5
    assert breaker.probe_due()
    breaker.admit()  # the half-open probe
    assert breaker.state == HALF_OPEN
    with pytest.raises(BackendUnavailable):
        breaker.admit()  # one probe at a time
    breaker.failure(RuntimeError("still down"))
    assert breaker.state == OPEN and breaker.retry_after() == 5
    now[0] += 5
    breaker.admit()
    now[0] += 5  # that probe never reported (its request expired unscored): another may go
    breaker.admit()
    breaker.success()
    assert breaker.state == CLOSED and breaker.failures == 0 and breaker.retry_after() is None
    breaker.admit()


def test_the_triton_client_timeout_follows_the_deadline_unless_set(tmp_path):
    from finsight.config import load_settings
    from finsight.serve.defaults import for_serving

    base = {"predict.model": str(tmp_path), "predict.device": "cpu", "serve.request_timeout_s": 3}
    assert for_serving(load_settings(flags=base)).triton.timeout_s == 3
    assert for_serving(load_settings(flags={**base, "triton.timeout_s": 20})).triton.timeout_s == 20


# ---------------------------------------------------------------- in-process: the app


class Switchable:
    """The real predictor, failing while ``broken`` is set, slow while ``delay`` is."""

    def __init__(self, predictor):
        self.inner, self.broken, self.delay, self.calls = predictor, False, 0.0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, texts):
        self.calls += 1
        time.sleep(self.delay)
        if self.broken:
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        return self.inner.predict(texts)


@pytest.fixture(scope="module")
def predictor(trained_tiny_model_dir):
    from finsight.predict import load_predictor
    from finsight.serve.defaults import for_serving

    return load_predictor(str(trained_tiny_model_dir), for_serving(serve_settings(trained_tiny_model_dir)))


def _client(model_dir, predictor, **serve):
    from litestar.testing import TestClient

    from finsight.serve import create_app

    return TestClient(create_app(serve_settings(model_dir, warmup_texts=0, **serve), predictor))


def _wait(check, timeout: float, step: float = 0.05) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "condition not reached in time"
        time.sleep(step)
    return time.monotonic() - started


def test_the_breaker_takes_the_app_out_of_service_and_a_probe_brings_it_back(trained_tiny_model_dir, predictor):
    model = Switchable(predictor)
    with _client(trained_tiny_model_dir, model, breaker_failures=2, breaker_reset_s=0.5) as client:
        _wait(lambda: client.get("/ready").status_code == 200, 10)
        model.broken = True
        for i in range(2):  # the failures themselves: 503 with the backend's reason, never a 500
            failed = client.post("/v1/predict", json={"text": f"Sales fell {i}%."})
            assert failed.status_code == 503, failed.text
            assert "the model backend failed" in failed.json()["detail"] and failed.headers["retry-after"]
        calls = model.calls
        refused = client.post("/v1/predict/batch", json={"texts": ["Sales fell."]})
        assert refused.status_code == 503 and model.calls == calls  # refused without a model call
        body = refused.json()
        assert body["limit"] == "serve.breaker_failures" and body["value"] == 2
        assert "Connection refused" in body["detail"] and refused.headers["retry-after"] == "1"
        assert client.post("/v1/analyze", json={"documents": ["Sales fell."]}).status_code == 503
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json() == {"status": "backend unavailable"}
        detail = client.get("/health/detailed").json()
        assert detail["status"] == "backend unavailable" and detail["breaker"]["state"] in (OPEN, HALF_OPEN)
        assert detail["last_backend_error"]["message"].endswith("Connection refused")
        time.sleep(1.2)  # the prober's probes fail: still out of service
        assert client.get("/ready").status_code == 503 and model.calls > calls
        model.broken = False
        took = _wait(lambda: client.get("/ready").status_code == 200, 3)
        assert took < 1.5  # breaker_reset_s + the prober's interval
        assert client.post("/v1/predict", json={"text": "Sales rose."}).status_code == 200
        detail = client.get("/health/detailed").json()
        assert detail["breaker"] == {"state": CLOSED, "consecutive_failures": 0, "failures_to_open": 2,
                                     "reset_s": 0.5, "probe_in_s": None}
        assert detail["last_backend_error"]["message"].endswith("Connection refused")  # kept for the operator


def test_a_slow_model_gets_a_504_with_the_error_shape(trained_tiny_model_dir, predictor):
    model = Switchable(predictor)
    with _client(trained_tiny_model_dir, model, request_timeout_s=0.3) as client:
        model.delay = 0.6
        started = time.monotonic()
        late = client.post("/v1/predict", json={"text": "Profit rose."})
        assert late.status_code == 504 and time.monotonic() - started < 0.6
        assert late.json() == {"status_code": 504, "limit": "serve.request_timeout_s", "value": 0.3,
                               "detail": "no answer within serve.request_timeout_s=0.3 s; the request "
                                         "was dropped (the model backend is slow or the queue is long)"}
        model.delay = 0.0
        time.sleep(0.5)
        assert client.post("/v1/predict", json={"text": "Profit rose."}).status_code == 200
        schema = client.get("/schema/openapi.json").json()
        assert "504" in schema["paths"]["/v1/predict"]["post"]["responses"]
        assert "/health/detailed" in schema["paths"]


# ---------------------------------------------------------------- a real server: metrics, /health/detailed


@pytest.fixture(scope="module")
def live(trained_tiny_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-health") / "serve.log"
    server = LiveServer(trained_tiny_model_dir, log, "serve.api_keys=[\"k1\"]", "serve.warmup_texts=2")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_health_detailed_is_open_and_says_what_runs(live):
    response = httpx.get(f"{live.url}/health/detailed", timeout=10)  # no key: an open path
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready" and body["backend"] == "torch" and body["device"] == "cpu"
    assert set(body["model"]) == {"name", "version"} and len(body["model"]["version"]) == 12
    assert body["uptime_s"] > 0 and body["queue_depth"] == 0 and body["in_flight"] == 0
    assert body["breaker"]["state"] == "closed" and body["last_backend_error"] is None
    assert body["cache"]["capacity"] == 10000
    assert 10 * 2**20 < body["resident_memory_bytes"] <= body["peak_resident_memory_bytes"] < 8 * 2**30
    assert httpx.post(f"{live.url}/v1/predict", json={"text": "x"}, timeout=10).status_code == 401  # still keyed
    schema = httpx.get(f"{live.url}/schema/openapi.json", timeout=10).json()
    assert "security" not in schema["paths"]["/health/detailed"]["get"]


def test_the_operators_metrics_move_with_traffic(live):
    headers = {"X-API-Key": "k1"}
    before = httpx.get(f"{live.url}/metrics", timeout=10).text
    text = f"Net sales rose {time.time()}% on strong demand."
    with httpx.Client(base_url=live.url, headers=headers, timeout=30) as client:
        assert client.post("/v1/predict", json={"text": text}).json()["cached"] is False
        assert client.post("/v1/predict", json={"text": text}).json()["cached"] is True
        results = client.post("/v1/predict/batch", json={"texts": [text, "  ", "NaN", "Costs fell."]}).json()
        assert [r["error"] for r in results["results"]] == [None, "empty text", "missing text", None]
        detail = client.get("/health/detailed").json()
    after = httpx.get(f"{live.url}/metrics", timeout=10).text

    def moved(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert moved("finsight_model_call_seconds_count", outcome="ok") == 2  # the miss, then "Costs fell."
    assert moved("finsight_model_call_seconds_sum", outcome="ok") > 0
    assert moved("finsight_confidence_count") == 4  # every answer, cached ones too
    assert metric(after, "finsight_confidence_bucket", le="1.0") == metric(after, "finsight_confidence_count")
    assert moved("finsight_unscored_texts_total", reason="empty") == 1
    assert moved("finsight_unscored_texts_total", reason="missing") == 1
    hits, misses = (metric(after, f"finsight_cache_{kind}_total") for kind in ("hits", "misses"))
    assert moved("finsight_cache_hits_total") == 2 and hits > 0
    assert metric(after, "finsight_cache_hit_ratio") == pytest.approx(hits / (hits + misses))
    assert metric(after, "finsight_cache_entries") >= 2 and metric(after, "finsight_circuit_open") == 0
    # /health/detailed counts the same lookups (the warm-up goes around the cache)
    assert (detail["cache"]["hits"], detail["cache"]["misses"]) == (hits, misses)
    # model time and request time are separate histograms
    assert "finsight_model_call_seconds_bucket" in after and "finsight_request_duration_seconds_bucket" in after


# ---------------------------------------------------------------- a real tritonserver, killed and restarted


@pytest.fixture(scope="module")
def triton_repo(tmp_path_factory, trained_tiny_model_dir):
    from predict_helpers import make_onnx_export
    from typer.testing import CliRunner

    from finsight.cli import app

    root = tmp_path_factory.mktemp("triton-health")
    shutil.copytree(trained_tiny_model_dir, root / "model")
    make_onnx_export(root / "model", root / "export-onnx")
    result = CliRunner().invoke(app, ["triton", "build", str(root / "model"), "--repo", str(root / "repo"),
                                      "--classifier-backend", "python"])
    assert result.exit_code == 0, result.output
    return root


def _timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _triton_stats(triton) -> int:
    """Texts the ensemble has scored, as the Triton server itself counts them."""
    stats = httpx.get(f"http://{triton.http_url}/v2/models/finsight/stats", timeout=5).json()
    return int(stats["model_stats"][0]["inference_count"])


def test_serve_on_triton_survives_a_slow_a_dead_and_a_restarted_server(triton_repo, tmp_path):
    from finsight.config import load_settings
    from finsight.triton.server import TritonServer

    triton = TritonServer(triton_repo / "repo", load_settings()).start()
    serve = None
    try:
        serve = LiveServer(triton_repo / "export-onnx", tmp_path / "serve.log",
                           "predict.backend=triton", f"triton.url={triton.http_url}", "triton.timeout_s=5",
                           "serve.request_timeout_s=1", "serve.breaker_failures=2",
                           "serve.breaker_reset_s=2", "serve.warmup_texts=2", "serve.cache_size=0")
        try:
            serve.wait_ready(60)
        except RuntimeError:
            raise RuntimeError("\n".join(line for line in serve.log.read_text().splitlines()
                                          if '"path": "/ready"' not in line)[-3000:]) from None
        with httpx.Client(base_url=serve.url, timeout=30) as client:
            assert client.post("/v1/predict", json={"text": "Profit rose."}).status_code == 200
            _slow_backend(client, triton)
            _dead_backend(client, triton)
            _restarted_backend(client, triton, serve)
    finally:
        if triton.pid:
            _signal_group(triton.pid, signal.SIGCONT)
        triton.stop()
        if serve is not None:
            serve.stop()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _slow_backend(client: httpx.Client, triton) -> None:
    """Triton stopped (SIGSTOP: it accepts connections but answers nothing): 504 at the deadline,
    and the request queued behind the stuck batch never reaches Triton once it is answered."""
    scored = _triton_stats(triton)
    _signal_group(triton.pid, signal.SIGSTOP)
    answers: dict[str, tuple] = {}

    def send(text):
        answers[text] = _timed(lambda: client.post("/v1/predict", json={"text": text}))

    first = threading.Thread(target=send, args=("Stuck at the model.",))
    first.start()
    time.sleep(0.3)  # the first request's batch is at the stopped server
    second = threading.Thread(target=send, args=("Queued behind it.",))
    second.start()
    first.join(10)
    second.join(10)
    _signal_group(triton.pid, signal.SIGCONT)
    for text, (response, took) in answers.items():
        print(f"SIGSTOPped Triton: {text!r} -> {response.status_code} in {took:.2f} s")
        assert response.status_code == 504, (text, response.text)
        assert response.json()["limit"] == "serve.request_timeout_s" and 0.9 < took < 2.0, took
    # The stuck batch finishes at Triton; the queued request was dropped from the next one.
    assert client.post("/v1/predict", json={"text": "After the pause."}).status_code == 200
    assert _triton_stats(triton) - scored == 2  # "Stuck at the model." and "After the pause."
    assert client.get("/ready").status_code == 200  # a slow call succeeded: no failure counted


def _dead_backend(client: httpx.Client, triton) -> None:
    """Triton killed: the failures, then 503 at once while the circuit is open; /ready 503."""
    _signal_group(triton.pid, signal.SIGKILL)
    triton.process.wait(10)
    for i in range(2):  # serve.breaker_failures: each a quick 503 with the backend's reason
        response, took = _timed(lambda: client.post("/v1/predict", json={"text": f"Dead {i}."}))
        print(f"killed Triton, failure {i + 1}: {response.status_code} in {took * 1000:.0f} ms")
        assert response.status_code == 503 and took < 1.0, (response.text, took)
        assert "Triton inference" in response.json()["detail"]
    for i in range(5):
        response, took = _timed(lambda: client.post("/v1/predict", json={"text": f"Refused {i}."}))
        print(f"circuit open, request {i + 1}: {response.status_code} in {took * 1000:.0f} ms")
        assert response.status_code == 503 and took < 0.5, (response.text, took)
        assert response.json()["limit"] == "serve.breaker_failures" and int(response.headers["retry-after"]) >= 1
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json() == {"status": "backend unavailable"}
    detail = client.get("/health/detailed").json()
    assert detail["breaker"]["state"] in ("open", "half-open") and "Triton" in detail["last_backend_error"]["message"]
    time.sleep(2.5)  # past breaker_reset_s: the prober's probe fails, the pod stays out
    assert client.get("/ready").status_code == 503


def _restarted_backend(client: httpx.Client, triton, serve: LiveServer) -> None:
    """The same Triton, restarted on the same ports: /ready 200 and predictions again within
    breaker_reset_s plus a margin, with no restart of finsight serve."""
    triton.stop()  # reaps the killed process group and its work dir
    triton.start(same_ports=True)
    took = _wait(lambda: client.get("/ready").status_code == 200, 2 + 3, step=0.1)
    print(f"Triton ready again -> /ready 200 after {took:.2f} s (serve.breaker_reset_s=2)")
    assert took <= 2 + 3
    response = client.post("/v1/predict", json={"text": "Back in service."})
    assert response.status_code == 200, response.text
    metrics = client.get("/metrics").text
    assert metric(metrics, "finsight_circuit_open") == 0 and metric(metrics, "finsight_circuit_rejected_total") >= 5
    assert metric(metrics, "finsight_deadline_exceeded_total") >= 2 and metric(metrics, "finsight_dropped_texts_total") >= 1
    log = serve.log.read_text()
    assert "circuit open" in log and "circuit closed" in log and "Traceback" not in log
    assert json.loads(client.get("/health/detailed").text)["breaker"]["state"] == "closed"
