"""ASGI middleware: request ids and JSON access logs, metrics, load shedding, API keys, media
types, the rate limit.

Order (outermost first, see app.py). Around litestar's router, so requests that match no route
(404, 405) are logged and counted too: request context -> Prometheus -> admission. Per route,
inside litestar's exception handling (so 401, 415 and 429 reach the outer two as responses):
API key -> media type -> rate limit.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from finsight.errors import ConfigError

if TYPE_CHECKING:
    from finsight.config import ServeSettings

ACCESS_LOGGER = "finsight.serve.access"
# nginx's code for "the client closed the connection before the answer": never sent, only
# logged and counted, so a client that gives up is not taken for a server error (500).
CLIENT_CLOSED = 499
REQUEST_ID = "x-request-id"
API_KEY = "x-api-key"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Request ids: a random per-process prefix and a counter (unique without a syscall per request).
_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count(1)


def is_open(path: str, open_paths: Iterable[str]) -> bool:
    """``path`` is one of ``open_paths`` or below one (``/schema`` covers ``/schema/openapi.json``)."""
    for entry in open_paths:
        entry = entry.rstrip("/") or "/"
        if path == entry or (entry != "/" and path.startswith(entry + "/")):
            return True
    return False


def open_path_patterns(open_paths: Iterable[str]) -> list[str]:
    """The same rule as :func:`is_open`, as anchored regexes for litestar's ``exclude``."""
    patterns = []
    for entry in open_paths:
        entry = entry.rstrip("/") or "/"
        patterns.append("^/$" if entry == "/" else f"^{re.escape(entry)}(/.*)?$")
    return patterns


def load_api_keys(opts: ServeSettings) -> tuple[str, ...]:
    """``serve.api_keys`` plus the lines of ``serve.api_keys_file`` (blank lines and # comments skipped)."""
    keys = [k for k in opts.api_keys if k]
    if opts.api_keys_file is not None:
        path = Path(opts.api_keys_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"serve.api_keys_file {path} cannot be read ({exc.strerror}); "
                              "point it at a file with one key per line") from None
        keys.extend(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return tuple(dict.fromkeys(keys))


def key_id(key: str) -> str:
    """A short, non-reversible name for a key (rate-limit buckets and logs never hold the key)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _header(scope: dict, name: str) -> str | None:
    raw = name.encode()
    for key, value in scope.get("headers", ()):
        if key.lower() == raw:
            return value.decode("latin-1")
    return None


async def send_json(send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class RequestContext:
    """X-Request-ID on every response (the client's own when it is a sane token), and one
    JSON access-log line per request: method, path, status, duration, client; never a text."""

    def __init__(self, app, *, access_log: bool = True):
        self.app = app
        self.log = logging.getLogger(ACCESS_LOGGER) if access_log else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        started = time.perf_counter()
        status = {"code": 500, "started": False}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        async def receive_watched():
            message = await receive()
            if message["type"] == "http.disconnect" and not status["started"]:
                # Gone before an answer started: the app answers CLIENT_CLOSED (app.py), and
                # if it never gets that far this line still says what happened.
                scope["state"]["client_gone"] = True
                status["code"] = CLIENT_CLOSED
            return message

        try:
            await self.app(scope, receive_watched, send_with_id)
        finally:
            if self.log is not None and self.log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                self.log.info(json.dumps({
                    "ts": round(time.time(), 3), "request_id": rid, "method": scope.get("method"),
                    "path": scope.get("path"), "status": status["code"],
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": client[0] if client else None,
                    "key": scope["state"].get("key_id")}))


def request_id(scope: dict) -> str:
    """This request's id: set by :class:`RequestContext`, else the client's, else a new one."""
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        given = _header(scope, REQUEST_ID)
        state["request_id"] = given if given and _CLIENT_ID.match(given) else \
            f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"
    return state["request_id"]


async def add_request_id(message: dict, scope: dict) -> None:
    """litestar ``before_send`` hook: X-Request-ID on every response, 404s included."""
    if message["type"] == "http.response.start":
        headers = [h for h in message.get("headers", []) if h[0].lower() != REQUEST_ID.encode()]
        headers.append((REQUEST_ID.encode(), request_id(scope).encode()))
        message["headers"] = headers


class ApiKeyAuth:
    """401 unless X-API-Key is one of the keys (constant-time compare against every key)."""

    def __init__(self, app, *, keys: tuple[str, ...], open_paths: Iterable[str]):
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.open_paths = tuple(open_paths)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not self.keys or is_open(scope["path"], self.open_paths):
            await self.app(scope, receive, send)
            return
        given = (_header(scope, API_KEY) or "").encode()
        # Compare with every key (no early exit) so timing does not say which prefix matched.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            detail = "missing X-API-Key header" if not given else "X-API-Key is not a valid key"
            await send_json(send, 401, {"status_code": 401, "detail": detail},
                            {"WWW-Authenticate": 'ApiKey header="X-API-Key"'})
            return
        scope.setdefault("state", {})["key_id"] = key_id(given.decode())
        await self.app(scope, receive, send)


def rate_limit_identity(request) -> str:
    """The rate-limit bucket: the authenticated key, else the client address."""
    key = request.scope.get("state", {}).get("key_id")
    if key:
        return key
    return "ip:" + (request.client.host if request.client else "unknown")


# ---------------------------------------------------------------- media types

_JSON_SUFFIX = re.compile(r"^application/[a-z0-9.+-]+\+json$")


def is_json_media_type(value: str | None) -> bool:
    """``application/json`` or ``application/*+json``, parameters (charset) allowed."""
    media = (value or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or bool(_JSON_SUFFIX.match(media))


class JsonOnly:
    """415 for a request body that is not declared as JSON. text/plain, form-urlencoded and
    multipart are what a browser sends cross-site without a CORS preflight, and a missing
    Content-Type is what ``fetch`` sends for a Blob: scoring them would let any web page use a
    keyless server."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "PATCH"):
            given = _header(scope, "content-type")
            if not is_json_media_type(given):
                what = f"Content-Type {given.split(';', 1)[0].strip()!r}" if given else "no Content-Type"
                detail = (f"the body must be JSON sent as application/json, got {what}; send the header "
                          "Content-Type: application/json (curl: -H 'Content-Type: application/json')")
                await send_json(send, 415, {"status_code": 415, "detail": detail})
                return
        await self.app(scope, receive, send)


# ---------------------------------------------------------------- metrics and admission


def prometheus(app, config):
    """litestar's Prometheus middleware around the router: it labels a request by its route
    template, which the router sets only later, so look the route up first (cached by litestar);
    a request that matches no route is labelled ``UNROUTED`` (never its raw path: scanners
    would make one series per probe)."""
    from litestar.exceptions import HTTPException
    from litestar.plugins.prometheus import PrometheusMiddleware

    class RoutedPrometheus(PrometheusMiddleware):
        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] == "http" and "path_template" not in scope:
                try:
                    scope["path_template"] = scope["litestar_app"].asgi_router.handle_routing(
                        path=scope["path"], method=scope.get("method"))[4]
                except HTTPException:
                    scope["path_template"] = UNROUTED
            await super().__call__(scope, receive, send)

    return RoutedPrometheus(app, config)


UNROUTED = "<unrouted>"


class Capacity:
    """When a scoring request is refused on arrival (503 + Retry-After, before its body is read):
    ``limit`` requests already in progress, or the batcher's queue already full. The app sets it
    at start-up (app.py) and the server's protocol asks it for every request
    (finsight/serve/protocol.py): a refusal there costs microseconds and no ASGI task, so under
    overload the event loop keeps its time for the requests it admitted. One per process: a
    server process runs one app.

    Refusals are logged as one access line per second with their count (``"shed": N``), not one
    each: measured under overload, a line per refusal cost as much as the refusal itself and
    halved the refusals the server could afford. ``finsight_requests_shed_total`` counts each."""

    LOG_EVERY_S = 1.0

    def __init__(self) -> None:
        self.limit: int | None = None
        self.full = lambda: False
        self.open_paths: tuple[str, ...] = ()
        self.log: logging.Logger | None = None
        self._head = self._body = b""
        self._unlogged: dict[str, int] = {}

    def configure(self, *, limit: int, full, open_paths: Iterable[str], access_log: bool) -> None:
        self.limit, self.full, self.open_paths = int(limit), full, tuple(open_paths)
        self.log = logging.getLogger(ACCESS_LOGGER) if access_log else None
        self._body = json.dumps({"status_code": 503, "detail": (
            f"the server is at capacity ({self.limit} requests in progress or the queue full: "
            "serve.max_concurrency, serve.max_queue); retry after 1 s"),
            "limit": "serve.max_concurrency", "value": self.limit}).encode()
        # The request id is the only part that varies.
        self._head = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                      b"retry-after: 1\r\ncontent-length: " +
                      str(len(self._body)).encode() + b"\r\nx-request-id: ")

    def refuses(self, path: str, in_progress: int) -> bool:
        if self.limit is None or is_open(path, self.open_paths):
            return False
        return in_progress >= self.limit or self.full()

    def refusal(self, path: str) -> bytes:
        """The whole HTTP answer, in the documented JSON error shape."""
        from finsight.serve.metrics import metrics

        metrics()["shed"].inc()
        if self.log is not None:
            if not self._unlogged:
                import asyncio

                asyncio.get_running_loop().call_later(self.LOG_EVERY_S, self._log_refusals)
            if path not in self._unlogged and len(self._unlogged) >= 16:
                path = UNROUTED  # a scan of many paths still gets a bounded number of lines
            self._unlogged[path] = self._unlogged.get(path, 0) + 1
        rid = f"{_ID_PREFIX}{next(_ID_COUNTER):016x}".encode()
        return self._head + rid + b"\r\n\r\n" + self._body

    def _log_refusals(self) -> None:
        counts, self._unlogged = self._unlogged, {}
        if self.log is not None and self.log.isEnabledFor(logging.INFO):
            for path, n in counts.items():
                self.log.info(json.dumps({
                    "ts": round(time.time(), 3), "request_id": None, "method": None, "path": path,
                    "status": 503, "ms": 0.0, "client": None, "key": None, "shed": n,
                    "seconds": self.LOG_EVERY_S}))


CAPACITY = Capacity()


# ---------------------------------------------------------------- a rate limit shared by workers


class ProcessLock:
    """An asyncio lock that is also held across processes (``flock`` on ``path``): litestar's
    rate limiter reads a key's history and writes it back under its lock, and with
    ``serve.workers`` > 1 that read-modify-write must exclude the other workers too."""

    def __init__(self, path: Path):
        import asyncio

        self.path = Path(path)
        self._local = asyncio.Lock()
        self._fd: int | None = None

    async def __aenter__(self) -> None:
        import fcntl

        from anyio import to_thread

        await self._local.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            # Held by another worker for a store read and write (well under a millisecond): wait
            # in a thread so this worker's event loop keeps serving meanwhile.
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                await to_thread.run_sync(fcntl.flock, self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._local.release()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        import fcntl

        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._local.release()


def shared_rate_limit(config, lock_path: Path):
    """litestar's rate-limit middleware with its lock held across worker processes; the app's
    ``rate_limit`` store must be shared too (a FileStore in the same directory, see app.py)."""
    from litestar.middleware.base import DefineMiddleware
    from litestar.middleware.rate_limit import RateLimitMiddleware

    class SharedRateLimit(RateLimitMiddleware):
        def __init__(self, app, config) -> None:
            super().__init__(app, config)
            self._lock = ProcessLock(lock_path)

    return DefineMiddleware(SharedRateLimit, config=config)
