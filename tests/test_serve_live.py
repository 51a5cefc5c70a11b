"""A real `finsight serve` process on a free loopback port: real HTTP, batching visible in
/metrics, the page in headless Chromium, schemathesis against the live OpenAPI schema, and a
graceful SIGTERM. One server for the module (the tiny trained model, torch backend)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

pytest.importorskip("litestar")

from conftest import REPO_ROOT  # noqa: E402
from serve_helpers import LiveServer, metric  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
# .ci/run installs chromium and sets this, so the browser test can never skip in CI.
REQUIRE_BROWSER = os.environ.get("CI", "").lower() == "true"  # CI runs .ci/run with CI=true
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts"))


@pytest.fixture(scope="module")
def server(trained_tiny_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    live = LiveServer(trained_tiny_model_dir, log, "serve.max_wait_ms=50", "serve.max_queue=512")
    try:
        live.wait_ready()
        yield live
    finally:
        code = live.stop()
    # uvicorn re-raises the signal after its graceful shutdown, so the exit status is -SIGTERM.
    assert code in (0, -signal.SIGTERM), f"finsight serve exit status {code} on SIGTERM:\n{live.output()}"
    assert "Application shutdown complete" in live.output()


def test_real_http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/health").json() == {"status": "ok"}
        response = client.post("/v1/predict", json={"text": "Net sales rose 12%."},
                               headers={"X-Request-ID": "live-1"})
        assert response.status_code == 200 and response.headers["x-request-id"] == "live-1"
        assert response.json()["label"] in ("negative", "neutral", "positive")
        assert client.post("/v1/predict", content=b"{", headers={"content-type": "application/json"}
                           ).status_code == 400
    log = server.output()
    assert '"request_id": "live-1"' in log and "Net sales rose" not in log  # JSON access log, no text


def test_concurrent_requests_share_model_calls(server):
    n = 24
    texts = [f"Quarterly revenue of unit {i} rose {i}% on strong demand." for i in range(n)]
    before = httpx.get(f"{server.url}/metrics").text
    barrier = threading.Barrier(n)
    codes: list[int] = []

    def call(text: str) -> None:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            codes.append(client.post(f"{server.url}/v1/predict", json={"text": text}).status_code)

    threads = [threading.Thread(target=call, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    after = httpx.get(f"{server.url}/metrics").text
    assert codes == [200] * n
    calls = metric(after, "finsight_model_calls_total") - metric(before, "finsight_model_calls_total")
    scored = metric(after, "finsight_batch_size_sum") - metric(before, "finsight_batch_size_sum")
    assert scored == n
    assert calls < n, f"{n} concurrent requests took {calls} model calls: no batching"


def test_page_in_chromium(server):
    if not CHROMIUM.exists():
        if REQUIRE_BROWSER:
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); CI runs this test")
    playwright = pytest.importorskip("playwright.sync_api")
    headlines = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "The company cut 300 jobs."]
    expected = httpx.post(f"{server.url}/v1/predict/batch", json={"texts": headlines}).json()["results"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto(f"{server.url}/")
            page.fill("#texts", "\n".join(headlines))
            page.click("#score")
            page.wait_for_function("document.querySelectorAll('[data-testid=result]').length === 2",
                                   timeout=30_000)
            labels = page.locator("[data-testid=label]").all_inner_texts()
            sentiments = [float(v) for v in page.locator("[data-testid=sentiment]").evaluate_all(
                "nodes => nodes.map(n => n.dataset.value)")]
            widths = page.locator("[data-prob] .bar i").evaluate_all("nodes => nodes.map(n => n.style.width)")
            # Each headline's words highlighted by contribution (POST /v1/explain), with a legend.
            page.wait_for_function("document.querySelectorAll('[data-explained]').length === 2", timeout=30_000)
            shown = page.locator("[data-testid=result]").first.locator("[data-testid=word]").evaluate_all(
                "nodes => nodes.map(n => [n.textContent, Number(n.dataset.contribution), n.style.background])")
            legend = page.locator("[data-testid=legend]").inner_text()
            page.screenshot(path=str(ARTIFACTS / "serve-page.png"), full_page=True)
        finally:
            browser.close()
    assert labels == [r["label"] for r in expected]
    assert sentiments == pytest.approx([r["sentiment"] for r in expected], abs=1e-6)
    first = expected[0]["probabilities"]
    assert widths[:3] == [f"{100 * first[k]:.1f}%" for k in ("negative", "neutral", "positive")]
    assert (ARTIFACTS / "serve-page.png").stat().st_size > 5000
    explained = httpx.post(f"{server.url}/v1/explain", json={"text": headlines[0]}).json()
    assert [word for word, _, _ in shown] == [w["word"] for w in explained["words"]]
    assert [c for _, c, _ in shown] == pytest.approx([w["contribution"] for w in explained["words"]], abs=1e-6)
    strongest = max(explained["words"], key=lambda w: abs(w["contribution"]))
    colour = next(bg for word, c, bg in shown if c == pytest.approx(strongest["contribution"], abs=1e-6))
    assert ("76, 174, 76" if strongest["contribution"] > 0 else "217, 83, 79") in colour and "0.6" in colour
    assert "supports the label" in legend and "works against it" in legend


def test_schemathesis_finds_no_server_errors_or_schema_violations(server, tmp_path):
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        pytest.fail("schemathesis (st) is missing; it is in the dev extra")
    result = subprocess.run(
        [st, "run", f"{server.url}/schema/openapi.json", "-n", "15", "--seed", "13", "--checks", "all",
         "--workers", "1", "--phases", "examples,coverage,fuzzing", "--request-timeout", "30"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
