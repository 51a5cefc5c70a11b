"""uvicorn's httptools protocol with a deadline for receiving a request (``serve.read_timeout_s``)
and load shedding on arrival (``serve.max_concurrency``, see middleware.Capacity).

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but it arms that timer
only after a response: a connection that opens and sends half a request line, or headers and no
body, is held forever (uvicorn has no header or body read timeout). A module of its own so
``serve.workers`` > 1 can hand the class to worker processes by name.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from finsight.serve.middleware import CAPACITY

class ReadTimeoutProtocol(HttpToolsProtocol):
    """The deadline is armed when the connection opens and when a request begins, and cleared
    once the request has fully arrived; past it the connection is closed (an app still reading
    the body then sees a disconnect, logged as 499). Between requests uvicorn's keep-alive
    timeout applies as before."""

    def __init__(self, *args: Any, read_timeout_s: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.read_timeout_s = read_timeout_s
        self.read_timer = None
        self.shed = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        if self.shed:  # a pipelined request after the refused one: the connection is closing
            return
        # Only between requests: a pipelined request behind one still being answered goes the
        # normal way (closing now would cut that answer off).
        idle = self.cycle is None or self.cycle.response_complete
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        if idle and CAPACITY.refuses(path, len(self.tasks)):
            self.shed = True
            method = self.parser.get_method().decode("latin-1")
            # Connection: close. Measured (benchmarks/serve_overload.py, 10x): keeping the
            # connection lets a client that ignores Retry-After retry at once, ~9,000 refusals/s
            # that left 20% of the unloaded goodput; closing it costs the client a reconnect
            # and kept 76%. The unread body then needs no parsing either.
            self.transport.write(CAPACITY.refusal(method, path, self.client))
            self.transport.close()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.shed:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self.shed:
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if not self.shed:
            super().data_received(data)

    def _arm(self) -> None:
        if self.read_timer is None:
            self.read_timer = self.loop.call_later(self.read_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _timed_out(self) -> None:
        self.read_timer = None
        if not self.transport.is_closing():
            self.transport.close()
