"""The HTTP edge of a real `finsight serve` process, tried as a hostile client would: JSON nested
10,000 deep, non-JSON media types, clients that leave mid-body, unknown paths and methods,
stalled sockets, a lone surrogate, overload, and the rate limit with two worker processes.
One server for most tests (the tiny trained model); shedding and the 2-worker rate limit need
settings of their own and get their own servers."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

pytest.importorskip("litestar")

from serve_helpers import LiveServer, metric  # noqa: E402

JSON = {"content-type": "application/json"}
READ_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def server(trained_tiny_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("edge") / "serve.log"
    live = LiveServer(trained_tiny_model_dir, log, f"serve.read_timeout_s={READ_TIMEOUT_S}")
    try:
        live.wait_ready()
        yield live
    finally:
        live.stop()


def access_lines(server: LiveServer) -> list[dict]:
    lines = []
    for line in server.log.read_text(errors="replace").splitlines():
        if line.startswith('{"ts"') and '"request_id"' in line:
            lines.append(json.loads(line))
    return lines


def error_shape(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status_code"] == status and isinstance(body["detail"], str) and body["detail"]
    return body


def raw(server: LiveServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def test_json_nested_10000_deep_is_a_400_without_a_traceback(server):
    deep_array = b"[" * 10_000 + b"]" * 10_000
    deep_object = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    cases = [("/v1/predict", b'{"text": ' + deep_array + b"}"),
             ("/v1/predict", b'{"text": ' + deep_object + b"}"),
             ("/v1/predict/batch", deep_array),
             ("/v1/analyze", b'{"documents": ' + deep_array + b"}")]
    for path, body in cases:
        response = httpx.post(server.url + path, content=body, headers=JSON, timeout=30)
        assert "nested too deeply" in error_shape(response, 400)["detail"], path
    log = server.output()
    assert "RecursionError" not in log and "Traceback" not in log
    assert httpx.post(server.url + "/v1/predict", json={"text": "Profit rose."}).status_code == 200


def test_bodies_not_sent_as_json_get_415(server):
    body = b'{"text": "Operating profit rose."}'
    before = httpx.get(server.url + "/metrics").text
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=xyz", None):
        headers = {"content-type": content_type} if content_type else {}
        response = httpx.post(server.url + "/v1/predict", content=body, headers=headers)
        detail = error_shape(response, 415)["detail"]
        assert "-H 'Content-Type: application/json'" in detail, detail
    after = httpx.get(server.url + "/metrics").text
    scored = metric(after, "finsight_batch_size_sum") - metric(before, "finsight_batch_size_sum")
    assert scored == 0, "a body that is not declared as JSON was scored"
    for content_type in ("application/json", "application/json; charset=utf-8", "application/vnd.api+json"):
        assert httpx.post(server.url + "/v1/predict", content=body,
                          headers={"content-type": content_type}).status_code == 200, content_type


def test_a_client_gone_mid_body_is_counted_as_499_never_500(server):
    n = 20
    before = httpx.get(server.url + "/metrics").text
    for _ in range(n):
        with raw(server) as sock:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 400\r\n\r\n{\"text\": \"Profit")
            time.sleep(0.1)  # the app is reading the body when the client leaves
    deadline = time.monotonic() + 10
    while True:
        after = httpx.get(server.url + "/metrics").text
        gone = metric(after, "finsight_requests_total", path="/v1/predict", status_code="499") - \
            metric(before, "finsight_requests_total", path="/v1/predict", status_code="499")
        if gone >= n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert gone == n
    assert metric(after, "finsight_requests_total", status_code="500") == 0
    statuses = [line["status"] for line in access_lines(server) if line["path"] == "/v1/predict"]
    assert statuses.count(499) >= n and 500 not in statuses
    assert "Traceback" not in server.output()


def test_404_and_405_get_an_access_line_and_a_metric_sample(server):
    before = httpx.get(server.url + "/metrics").text
    missing = httpx.get(server.url + "/no/such/path", headers={"X-Request-ID": "edge-404"})
    wrong = httpx.get(server.url + "/v1/predict", headers={"X-Request-ID": "edge-405"})
    error_shape(missing, 404)
    error_shape(wrong, 405)
    after = httpx.get(server.url + "/metrics").text
    for status in ("404", "405"):
        added = metric(after, "finsight_requests_total", path="<unrouted>", status_code=status) - \
            metric(before, "finsight_requests_total", path="<unrouted>", status_code=status)
        assert added == 1, status
    lines = {line["request_id"]: line for line in access_lines(server)}
    assert lines["edge-404"]["status"] == 404 and lines["edge-404"]["path"] == "/no/such/path"
    assert lines["edge-405"]["status"] == 405 and lines["edge-405"]["method"] == "GET"


def test_stalled_sockets_are_closed_within_the_read_timeout(server):
    stalled = []
    for i in range(60):
        sock = raw(server)
        # Half a request line; half the headers; a whole head and half the body.
        sock.sendall([b"POST /v1/pre", b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Ty",
                      b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"te"][i % 3])
        stalled.append(sock)
    opened = time.monotonic()
    # Meanwhile the server answers everyone else.
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(5):
            assert client.post("/v1/predict", json={"text": "Net sales rose."}).status_code == 200
    closed_after, held = [], 0
    deadline = opened + READ_TIMEOUT_S + 5
    for sock in stalled:
        try:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            while sock.recv(4096):  # EOF (b"") once the server closes it
                pass
            closed_after.append(time.monotonic() - opened)
        except ConnectionResetError:
            closed_after.append(time.monotonic() - opened)
        except TimeoutError:
            held += 1
        sock.close()
    assert held == 0, f"{held} of {len(stalled)} stalled connections still open {READ_TIMEOUT_S + 5} s later"
    assert min(closed_after) >= READ_TIMEOUT_S - 0.5  # the timeout, not an eager close
    assert httpx.get(server.url + "/health").status_code == 200


def test_a_lone_surrogate_is_named(server):
    for body in (b'{"text": "abc\\ud800"}', b'{"text": "abc\\ud800x"}'):
        detail = error_shape(httpx.post(server.url + "/v1/predict", content=body, headers=JSON), 400)["detail"]
        assert "unpaired UTF-16 surrogate \\ud800" in detail and "truncated" not in detail, detail
    # A complete pair is a character like any other.
    assert httpx.post(server.url + "/v1/predict", content=b'{"text": "up \\ud83d\\ude80"}',
                      headers=JSON).status_code == 200


def test_overload_is_refused_at_once_before_the_body(trained_tiny_model_dir, tmp_path):
    live = LiveServer(trained_tiny_model_dir, tmp_path / "serve.log", "serve.max_concurrency=2",
                      "serve.read_timeout_s=30")
    try:
        live.wait_ready()
        # Two requests in progress: their heads have arrived, their bodies have not.
        holders = [raw(live) for _ in range(2)]
        for sock in holders:
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 40\r\n\r\n{")
        time.sleep(0.5)
        began = time.perf_counter()
        refused = httpx.post(live.url + "/v1/predict", json={"text": "Profit rose."}, timeout=10)
        elapsed = time.perf_counter() - began
        body = error_shape(refused, 503)
        assert refused.headers["retry-after"] == "1" and body["limit"] == "serve.max_concurrency"
        assert elapsed < 0.5, f"the refusal took {elapsed:.2f} s"
        assert httpx.get(live.url + "/health").status_code == 200  # probes are never shed
        metrics = httpx.get(live.url + "/metrics").text
        assert metric(metrics, "finsight_requests_shed_total") == 1
        for sock in holders:
            sock.close()
        time.sleep(0.5)
        assert httpx.post(live.url + "/v1/predict", json={"text": "Profit rose."}).status_code == 200
        deadline = time.monotonic() + 5  # refusals are logged once a second, with their count
        while '"shed": ' not in live.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        shed = [json.loads(line) for line in live.log.read_text().splitlines() if '"shed": ' in line]
        assert [(line["path"], line["status"], line["shed"]) for line in shed] == [("/v1/predict", 503, 1)]
    finally:
        live.stop()


def test_rate_limit_counts_across_two_workers(trained_tiny_model_dir, tmp_path):
    live = LiveServer(trained_tiny_model_dir, tmp_path / "serve.log", "serve.workers=2",
                      'serve.api_keys=["k1"]', "serve.rate_limit=60/minute", "serve.access_log=true")
    try:
        live.wait_ready()
        codes = []
        for i in range(200):
            # A new connection each time, so the kernel spreads them over both workers.
            response = httpx.post(live.url + "/v1/predict", json={"text": f"Sales rose {i}%."},
                                  headers={"X-API-Key": "k1", "Connection": "close"}, timeout=30)
            codes.append(response.status_code)
        assert codes.count(200) == 60 and codes.count(429) == 140, {c: codes.count(c) for c in set(codes)}
        assert codes[:60] == [200] * 60
        log = live.log.read_text()
        assert log.count("Application startup complete") == 2
        pids = {json.loads(line)["request_id"][:16] for line in log.splitlines()
                if line.startswith('{"ts"') and '"path": "/v1/predict"' in line}
        assert len(pids) == 2, "one worker answered every request: the test proves nothing"
    finally:
        live.stop()
