"""uvicorn's httptools protocol with a deadline for receiving a request (``serve.read_timeout_s``).

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but it arms that timer
only after a response: a connection that opens and sends half a request line, or headers and no
body, is held forever (uvicorn has no header or body read timeout). A module of its own so
``serve.workers`` > 1 can hand the class to worker processes by name.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class ReadTimeoutProtocol(HttpToolsProtocol):
    """The deadline is armed when the connection opens and when a request begins, and cleared
    once the request has fully arrived; past it the connection is closed (an app still reading
    the body then sees a disconnect, logged as 499). Between requests uvicorn's keep-alive
    timeout applies as before."""

    def __init__(self, *args: Any, read_timeout_s: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.read_timeout_s = read_timeout_s
        self.read_timer = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

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
