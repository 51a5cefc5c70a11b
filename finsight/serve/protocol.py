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

# After a refusal, the connection's next bytes are read this much later. Measured with
# benchmarks/serve_overload.py at 10x (wrk retries at once, ignoring Retry-After): refusing and
# reading on at once let the refused connections retry ~9,000 times a second, and the answers
# fell to 20% of the unloaded rate; closing each refused connection (the client reconnects)
# kept 63-76%; keeping it open and reading it again 50 ms later kept 100-110%, with lower
# latency for the answered and the refused alike (no reconnects waiting in the accept queue).
SHED_PAUSE_S = 0.05

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
        # Only between requests: a pipelined request behind one still being answered goes the
        # normal way (answers go out in the order the requests came).
        idle = self.cycle is None or self.cycle.response_complete
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        if idle and CAPACITY.refuses(path, len(self.tasks)):
            self.shed = True  # until this request's body has gone by, unread
            self.transport.write(CAPACITY.refusal(path))
            if not self.parser.should_keep_alive():  # HTTP/1.0 or Connection: close
                self.transport.close()
                return
            self.transport.pause_reading()
            self.loop.call_later(SHED_PAUSE_S, self._resume)
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.shed:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self.shed:
            super().on_message_complete()
            return
        # The refused request has fully arrived: the connection waits for the next one with
        # uvicorn's keep-alive timeout, as after any answer.
        self.shed = False
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def _resume(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

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
