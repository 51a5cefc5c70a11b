"""ASGI middleware: request ids and JSON access logs, API keys, errors as responses.

Order (outermost first, see app.py): request context -> Prometheus -> errors as responses ->
API key -> rate limit. Auth and rate-limit refusals are turned into responses *inside* the
Prometheus middleware, so /metrics counts 401 and 429 with their real status codes.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from finsight.errors import ConfigError

if TYPE_CHECKING:
    from finsight.config import ServeSettings

ACCESS_LOGGER = "finsight.serve.access"
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
        status = {"code": 500}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
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


def errors_as_responses(app):
    """Render exceptions raised by inner middleware (e.g. 429) with the app's exception handlers
    here, so outer middleware (Prometheus, access log) sees the real status code."""
    from litestar.middleware._internal.exceptions import ExceptionHandlerMiddleware

    return ExceptionHandlerMiddleware(app=app, debug=None)
