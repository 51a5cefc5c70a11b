"""``create_app(settings, predictor)``: the litestar app, its routes and its one error mapping.

Annotations here are evaluated (no ``from __future__ import annotations``): the request types
carry this server's limits and are built per app, so litestar must see the real classes.
"""

import asyncio
import logging
import math
import re
from pathlib import Path
from typing import Any, Callable

from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig

from finsight import __version__
from finsight.config import ServeSettings, Settings, parse_rate_limit
from finsight.errors import FinsightError
from finsight.predict.base import Predictor
from finsight.serve import middleware as mw
from finsight.serve.batching import DeadlineExceeded, Overloaded
from finsight.serve.breaker import BackendUnavailable
from finsight.serve.metrics import LATENCY_BUCKETS, PREFIX, metrics, render
from finsight.serve.page import PAGE
from finsight.serve.schemas import (
    AnalyzeResponse, BatchResponse, DetailedHealth, ErrorBody, Health, ModelInfo, PredictResponse,
    explain_request_type, request_types)
from finsight.serve.index_api import PATH as INDEX_PATH, index_request_types, index_route
from finsight.serve.service import Service

log = logging.getLogger("finsight.serve")


def _spec(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=description)


def _responses(*codes: int) -> dict[int, ResponseSpec]:
    described = {
        400: "malformed JSON, a wrong type or an unknown field",
        401: "missing or wrong X-API-Key (when the server has keys)",
        413: "request body larger than serve.max_body_bytes",
        415: "the body is not sent as JSON (Content-Type: application/json or application/*+json)",
        422: "a text longer than serve.max_text_chars (a document: serve.max_document_chars) or more "
             "items than serve.max_texts_per_request",
        429: "rate limit (serve.rate_limit) exceeded; see the RateLimit-* headers",
        503: "the server is at capacity (serve.max_concurrency), the request queue is full "
             "(serve.max_queue), the model is warming up or the model backend is failing "
             "(circuit open: serve.breaker_failures); see Retry-After",
        504: "no answer within serve.request_timeout_s; the request was dropped unscored",
    }
    return {code: _spec(described[code]) for code in codes}


SCORING_ERRORS = (400, 401, 413, 415, 422, 429, 503, 504)
READ_ERRORS = (401, 429)


# ---------------------------------------------------------------- the error mapping


def _error(status: int, detail: str, *, headers: dict | None = None, **fields: Any) -> Response:
    body = {"status_code": status, "detail": detail, **{k: v for k, v in fields.items() if v is not None}}
    return Response(body, status_code=status, headers=headers, media_type=MediaType.JSON)


# msgspec's messages for the limits declared in request_types(); mapped to 422 naming the key.
_TOO_LONG = re.compile(r"Expected `(str|array)` of length <= (\d+)")
# A high-surrogate escape not followed by a low one: msgspec calls that "Input data was truncated".
_LONE_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def _client_gone(request: Request) -> Response | None:
    """The answer for a request whose client left before the body was sent: CLIENT_CLOSED, which
    nobody receives but the access log and the metrics then tell the truth (no false 500)."""
    if request.scope.get("state", {}).get("client_gone"):
        return _error(mw.CLIENT_CLOSED, "the client closed the connection before the body was sent")
    return None


def _bad_json(request: Request, detail: str) -> str:
    """msgspec's message, or what is really wrong where its message misleads."""
    if detail == "Input data was truncated":
        body = getattr(request, "_body", None)  # litestar keeps the body it read on the request
        match = _LONE_SURROGATE.search(body) if isinstance(body, bytes) else None
        if match:
            escape = match.group().decode()
            return (f"a text is not valid Unicode: unpaired UTF-16 surrogate {escape} at byte "
                    f"{match.start()} of the body (a high surrogate \\ud800-\\udbff must be followed by a "
                    "low one \\udc00-\\udfff); send the character itself or a complete pair")
    return detail


def _exception_handlers(opts: ServeSettings) -> dict:
    def validation(request: Request, exc: ValidationException) -> Response:
        for item in exc.extra if isinstance(exc.extra, list) else []:
            match = _TOO_LONG.search(str(item.get("message", "")))
            if match:
                where = str(item.get("key") or "")
                key = ("max_texts_per_request" if match.group(1) == "array" else
                       "max_document_chars" if where.startswith("documents") else "max_text_chars")
                limit = getattr(opts, key)
                what = (f"more than {limit} items in one request" if key == "max_texts_per_request"
                        else f"a {'document' if key == 'max_document_chars' else 'text'} is longer "
                             f"than {limit} characters")
                return _error(422, f"{what} (serve.{key}={limit}; at {item.get('key') or 'the body'})",
                              limit=f"serve.{key}", value=limit)
        return _error(400, exc.detail or "invalid request body", extra=exc.extra or None)

    def http(request: Request, exc: HTTPException) -> Response:
        if (gone := _client_gone(request)) is not None:
            return gone
        if exc.status_code == 400:
            return _error(400, _bad_json(request, exc.detail), headers=exc.headers, extra=exc.extra or None)
        if exc.status_code == 413:
            return _error(413, f"request body is larger than serve.max_body_bytes={opts.max_body_bytes} bytes",
                          headers=exc.headers, limit="serve.max_body_bytes", value=opts.max_body_bytes)
        return _error(exc.status_code, exc.detail, headers=exc.headers, extra=exc.extra or None)

    def overloaded(request: Request, exc: Overloaded) -> Response:
        metrics()["rejected"].inc()
        return _error(503, str(exc), headers={"Retry-After": str(exc.retry_after)},
                      limit="serve.max_queue", value=opts.max_queue)

    def finsight_error(request: Request, exc: FinsightError) -> Response:
        log.error("%s: %s", type(exc).__name__, exc)
        return _error(503, f"the model backend failed: {exc}", headers={"Retry-After": "5"})

    def too_deep(request: Request, exc: RecursionError) -> Response:
        if "deserializ" not in str(exc):  # msgspec's "... while deserializing an object"
            return internal(request, exc)
        return _error(400, "the JSON body is nested too deeply (arrays or objects inside arrays or "
                           "objects, hundreds of levels); a request holds strings, e.g. {\"text\": \"...\"}")

    def internal(request: Request, exc: Exception) -> Response:
        if (gone := _client_gone(request)) is not None:
            return gone
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        request_id = request.scope.get("state", {}).get("request_id")
        return _error(500, f"internal error (request id {request_id})")

    return {ValidationException: validation, HTTPException: http, Overloaded: overloaded,
            FinsightError: finsight_error, RecursionError: too_deep, Exception: internal}


def _health_handlers(opts: ServeSettings) -> dict:
    """A passed deadline (504) and an open circuit (503 at once, without touching the model)."""

    def deadline(request: Request, exc: DeadlineExceeded) -> Response:
        metrics()["deadline_exceeded"].inc()
        return _error(504, str(exc), limit="serve.request_timeout_s", value=opts.request_timeout_s)

    def unavailable(request: Request, exc: BackendUnavailable) -> Response:
        metrics()["circuit_rejected"].inc()
        return _error(503, str(exc), headers={"Retry-After": str(exc.retry_after)},
                      limit="serve.breaker_failures", value=opts.breaker_failures)

    return {DeadlineExceeded: deadline, BackendUnavailable: unavailable}


# ---------------------------------------------------------------- the app


class _App(Litestar):
    """Litestar with finsight's edge around its router (see :func:`_edge`): litestar's own
    middleware runs only for requests that matched a route, so a 404 or 405 would otherwise get
    no access-log line and no metric sample."""

    def __init__(self, *, edge: Callable[[Any], Any], **kwargs: Any):
        self._edge = edge
        super().__init__(**kwargs)

    def _create_asgi_handler(self) -> Any:
        return self._edge(super()._create_asgi_handler())


def create_app(settings: Settings, predictor: Predictor, *, service: Service | None = None,
               shared_dir: Path | None = None) -> Litestar:
    """The service over ``predictor``: routes, limits, auth, metrics, warm-up and shutdown.
    ``shared_dir``: a directory every worker process of this server shares (the rate limit's
    store, so ``serve.rate_limit`` counts across workers); None keeps it in this process."""
    opts = settings.serve
    service = service or Service.build(predictor, settings)
    keys = mw.load_api_keys(opts)
    types = {**request_types(opts), **index_request_types(opts)}
    explain_type = explain_request_type(opts)
    needs_key = lambda path: bool(keys) and not mw.is_open(path, opts.open_paths)  # noqa: E731
    tasks: list[asyncio.Task] = []  # holds the warm-up and prober tasks so they are not garbage-collected

    async def start() -> None:
        service.batcher.start()
        mw.CAPACITY.configure(limit=max_concurrency(opts), full=lambda: service.batcher.depth >= opts.max_queue,
                              open_paths=opts.open_paths, access_log=opts.access_log)
        loop = asyncio.get_running_loop()
        # Warm up in the background: /health answers at once, /ready once the model is warm.
        tasks.append(loop.create_task(_warm(service)))
        tasks.append(loop.create_task(service.watch_backend(), name="finsight-backend-probe"))

    async def stop() -> None:
        tasks[-1].cancel()  # no probe once shutdown begins
        await service.batcher.stop()  # queued requests are answered before the worker exits

    app = _App(
        edge=lambda router: _edge(router, opts),
        route_handlers=[*_routes(types, needs_key), _explain_route(explain_type, needs_key)],
        dependencies={"service": Provide(lambda: service, use_cache=True, sync_to_thread=False)},
        exception_handlers={**_exception_handlers(opts), **_health_handlers(opts)},
        middleware=_middleware(opts, keys, shared_dir),
        stores=_stores(shared_dir),
        request_max_body_size=opts.max_body_bytes,
        cors_config=_cors(opts),
        openapi_config=_openapi(keys),
        on_startup=[start],
        on_shutdown=[stop],
        before_send=[mw.add_request_id],
        debug=False,
    )
    # The request Structs forbid unknown fields; say so in the schema (litestar leaves it open).
    schemas = app.openapi_schema.components.schemas
    for struct in [*types.values(), explain_type]:
        schemas[struct.__name__].additional_properties = False
    return app


def _routes(types: dict[str, type], needs_key: Any) -> list:
    """The route handlers; the request types carry this server's limits (see schemas.py), and
    ``needs_key(path)`` says which operations the schema marks as needing X-API-Key."""
    PredictRequest, BatchRequest, AnalyzeRequest = types["predict"], types["batch"], types["analyze"]

    def security(path: str) -> list | None:
        return [{"ApiKey": []}] if needs_key(path) else None

    @post("/v1/predict", status_code=200, summary="Score one text", responses=_responses(*SCORING_ERRORS),
          security=security("/v1/predict"))
    async def predict(data: PredictRequest, service: Service) -> PredictResponse:
        score = (await service.score([data.text]))[0]
        return PredictResponse(label=score.label, confidence=score.confidence, probabilities=score.probabilities,
                               sentiment=score.sentiment, cached=score.cached, error=score.error,
                               model=service.model_ref)

    @post("/v1/predict/batch", status_code=200, summary="Score texts, results in input order",
          responses=_responses(*SCORING_ERRORS), security=security("/v1/predict/batch"))
    async def predict_batch(data: BatchRequest, service: Service) -> BatchResponse:
        return BatchResponse(results=await service.score(data.texts), model=service.model_ref)

    @post("/v1/analyze", status_code=200, responses=_responses(*SCORING_ERRORS),
          security=security("/v1/analyze"),
          summary="Score long documents like `analyze --mode document`: split into sentences, "
                  "token-weighted mean")
    async def analyze(data: AnalyzeRequest, service: Service) -> AnalyzeResponse:
        return AnalyzeResponse(results=await service.score_documents(data.documents), model=service.model_ref)

    @get("/v1/model", summary="What is served: name, version, labels, backend, export validation",
         responses=_responses(*READ_ERRORS), security=security("/v1/model"))
    async def model(service: Service) -> ModelInfo:
        return service.info

    @get("/health", summary="The process is alive", security=security("/health"))
    async def health() -> Health:
        return Health(status="ok")

    @get("/ready", summary="The model is loaded, warmed up and its backend answers (circuit closed)",
         security=security("/ready"),
         responses={503: ResponseSpec(data_container=Health,
                                      description="still warming up, or the backend is failing (circuit open)")})
    async def ready(service: Service) -> Response[Health]:
        status = service.status
        if status == "ready":
            return Response(Health(status=status))
        retry = service.breaker.retry_after()
        return Response(Health(status=status), status_code=503,
                        headers={"Retry-After": str(max(1, math.ceil(retry or 1)))})

    @get("/health/detailed", security=security("/health/detailed"),
         summary="Model, backend, uptime, queue, cache, circuit breaker, last backend error, memory")
    async def health_detailed(service: Service) -> DetailedHealth:
        return service.detailed()

    @get("/metrics", include_in_schema=False)
    async def metrics_route() -> Response[bytes]:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @get("/", include_in_schema=False, media_type=MediaType.HTML)
    async def page() -> str:
        return PAGE

    index = index_route(types["index"], responses=_responses(*SCORING_ERRORS), security=security(INDEX_PATH))
    return [predict, predict_batch, analyze, index, model, health, ready, health_detailed, metrics_route, page]


def max_concurrency(opts: ServeSettings) -> int:
    """``serve.max_concurrency``, else what the batcher can hold: a full queue plus the batch
    being scored (each up to ``max_queue`` requests), plus a few being read or answered."""
    if opts.max_concurrency is not None:
        return opts.max_concurrency
    return 2 * opts.max_queue + 8


def _edge(router: Any, opts: ServeSettings) -> Any:
    """Outermost first: request context (ids, access log) -> Prometheus -> the router. (Load is
    shed before this, in the server's protocol: mw.Capacity.)"""
    counted = mw.prometheus(router, PrometheusConfig(app_name="finsight", prefix=PREFIX, group_path=True,
                                                       buckets=list(LATENCY_BUCKETS)))
    return mw.RequestContext(counted, access_log=opts.access_log)


def _middleware(opts: ServeSettings, keys: tuple[str, ...], shared_dir: Path | None) -> list:
    """Per route, outermost first (inside litestar's exception handling: a refusal raised here
    reaches the edge as a response with its real code)."""
    middleware: list[Any] = []
    if keys:
        middleware.append(lambda app: mw.ApiKeyAuth(app, keys=keys, open_paths=opts.open_paths))
    middleware.append(mw.JsonOnly)
    if opts.rate_limit:
        config = RateLimitConfig(rate_limit=parse_rate_limit(opts.rate_limit),
                                 exclude=mw.open_path_patterns(opts.open_paths),
                                 identifier_for_request=mw.rate_limit_identity)
        middleware.append(config.middleware if shared_dir is None else
                          mw.shared_rate_limit(config, shared_dir / "rate_limit.lock"))
    return middleware


def _stores(shared_dir: Path | None) -> dict | None:
    if shared_dir is None:
        return None
    from litestar.stores.file import FileStore

    # Made here: FileStore drops a write silently when its directory is missing.
    (shared_dir / "rate_limit").mkdir(parents=True, exist_ok=True)
    return {"rate_limit": FileStore(shared_dir / "rate_limit")}


def _cors(opts: ServeSettings) -> CORSConfig | None:
    if not opts.cors_origins:
        return None
    return CORSConfig(allow_origins=list(opts.cors_origins), allow_methods=["GET", "POST"],
                      allow_headers=["Content-Type", "X-API-Key", "X-Request-ID"],
                      expose_headers=["X-Request-ID", "Retry-After", "RateLimit-Limit",
                                      "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"])


def _openapi(keys: tuple[str, ...]) -> OpenAPIConfig:
    security: dict[str, Any] = {}
    if keys:  # the operations that need it say so (open paths do not)
        security = {"components": Components(security_schemes={"ApiKey": SecurityScheme(
            type="apiKey", name="X-API-Key", security_scheme_in="header")})}
    return OpenAPIConfig(title="finsight", version=__version__, path="/schema",
                         description="Financial sentiment: label, probabilities and sentiment "
                                     "(P(positive) - P(negative)) per text.", **security)


async def _warm(service: Service) -> None:
    try:
        await service.warm_up()
    except Exception:  # noqa: BLE001 - /ready stays 503 and the log says why
        log.exception("warm-up failed; /ready stays 503")


def _explain_route(ExplainRequest: type, needs_key: Any) -> Any:
    """POST /v1/explain (finsight/serve/explain.py), under the same limits and key as /v1/predict."""
    from finsight.serve.explain import explain
    from finsight.serve.schemas import ExplainResponse

    @post("/v1/explain", status_code=200, responses=_responses(*SCORING_ERRORS),
          security=[{"ApiKey": []}] if needs_key("/v1/explain") else None,
          summary="Which words drove the label: each word's contribution (word occlusion)")
    async def explain_route(data: ExplainRequest, service: Service) -> ExplainResponse:
        return await explain(service, data.text)

    return explain_route
