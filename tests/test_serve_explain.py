"""POST /v1/explain on a real `finsight serve` process (the tiny trained model, torch backend),
with an API key and a text limit: the same limits and auth as /v1/predict, and the same
attributions as the library gives."""

from __future__ import annotations

import signal

import httpx
import pytest

pytest.importorskip("litestar")

from serve_helpers import LiveServer  # noqa: E402

KEY = "explain-key"


@pytest.fixture(scope="module")
def server(trained_tiny_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-explain") / "serve.log"
    live = LiveServer(trained_tiny_model_dir, log, f"serve.api_keys=[{KEY}]", "serve.max_text_chars=120")
    try:
        live.wait_ready()
        yield live
    finally:
        assert live.stop() in (0, -signal.SIGTERM), live.output()


def _post(server, body, key: str | None = KEY):
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(f"{server.url}/v1/explain", json=body, headers=headers, timeout=30)


def test_explain_matches_the_library(server, trained_tiny_model_dir, one_thread):
    from finsight.config import load_settings
    from finsight.predict import load_predictor
    from finsight.predict.explain import explain_texts

    text = "Operating  profit rose to EUR 13.1 mn from EUR 8.7 mn"
    response = _post(server, {"text": text})
    assert response.status_code == 200, response.text
    body = response.json()
    [local] = explain_texts(load_predictor(str(trained_tiny_model_dir), load_settings(), backend="torch"), [text])
    assert body["label"] == local.label and body["text"] == local.text and body["sentences"] is None
    assert [w["word"] for w in body["words"]] == [w.word for w in local.words]
    assert [w["contribution"] for w in body["words"]] == pytest.approx([w.contribution for w in local.words], abs=1e-5)
    assert all(body["text"][w["start"]:w["end"]] == w["word"] for w in body["words"])
    assert body["model"]["name"]


def test_explain_has_the_limits_and_auth_of_predict(server):
    assert _post(server, {"text": "profit rose"}, key=None).status_code == 401
    assert _post(server, {"text": "profit rose"}, key="wrong").status_code == 401
    long = _post(server, {"text": "profit rose " * 20})
    assert long.status_code == 422 and long.json()["limit"] == "serve.max_text_chars"
    assert _post(server, {"text": "profit", "extra": 1}).status_code in (400, 422)
    assert _post(server, {}).status_code in (400, 422)
    empty = _post(server, {"text": "   "})
    assert empty.status_code == 200 and empty.json()["error"] == "empty text" and empty.json()["label"] is None
    schema = httpx.get(f"{server.url}/schema/openapi.json", headers={"X-API-Key": KEY}).json()
    assert schema["paths"]["/v1/explain"]["post"]["security"] == [{"ApiKey": []}]
    assert schema["components"]["schemas"]["ExplainRequest"]["properties"]["text"]["maxLength"] == 120
