"""The circuit breaker in front of the model backend (``serve.breaker_failures``, ``serve.breaker_reset_s``).

``breaker_failures`` consecutive failed model calls (a dead Triton server, an ONNX Runtime
error) open the circuit: scoring is refused at once with 503 + Retry-After instead of every
request waiting for its own failure, and ``/ready`` answers 503 so Kubernetes takes the pod out
of the Service. ``breaker_reset_s`` after it opened, one call may go through (half-open): the
app's prober sends one itself, since a pod out of the Service gets no traffic to probe with.
Its success closes the circuit; its failure opens it for another ``breaker_reset_s``.

Outcomes are recorded on the predictor's worker thread and read on the event loop: a lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

log = logging.getLogger("finsight.serve")


class BackendUnavailable(Exception):
    """The circuit is open: the backend failed ``failures`` times in a row; retry after ``retry_after`` s."""

    def __init__(self, failures: int, retry_after: int, last_error: str | None):
        super().__init__(f"the model backend is unavailable ({failures} consecutive failures, "
                         f"serve.breaker_failures; last: {last_error}); retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class LastError:
    message: str
    at: float  # unix time


class CircuitBreaker:
    def __init__(self, failures: int, reset_s: float, *, clock: Callable[[], float] = time.monotonic):
        self.threshold, self.reset_s, self._clock = int(failures), float(reset_s), clock
        self.state = CLOSED
        self.failures = 0  # consecutive
        self.last_error: LastError | None = None
        self._next_probe = 0.0
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self.state == CLOSED

    def admit(self) -> None:
        """Let a model call through, or raise :class:`BackendUnavailable`. When the circuit is
        open and ``reset_s`` has passed, this caller is the half-open probe; a probe whose call
        never ran (its request expired in the queue) is replaced after another ``reset_s``."""
        with self._lock:
            if self.state == CLOSED:
                return
            now = self._clock()
            if now >= self._next_probe:
                self.state, self._next_probe = HALF_OPEN, now + self.reset_s
                return
            retry_after = max(1, math.ceil(self._next_probe - now))
            message = self.last_error.message if self.last_error else None
        raise BackendUnavailable(self.failures, retry_after, message)

    def probe_due(self) -> bool:
        with self._lock:
            return self.state != CLOSED and self._clock() >= self._next_probe

    def retry_after(self) -> float | None:
        """Seconds until a probe may run; None while closed."""
        with self._lock:
            return None if self.state == CLOSED else max(0.0, self._next_probe - self._clock())

    def success(self) -> None:
        with self._lock:
            was, self.state, self.failures = self.state, CLOSED, 0
        if was != CLOSED:
            log.info("circuit closed: the model backend answered again")

    def failure(self, error: BaseException) -> None:
        text = (str(error).strip() or type(error).__name__).splitlines()[0]
        with self._lock:
            self.failures += 1
            self.last_error = LastError(text, time.time())
            was = self.state
            if was != CLOSED or self.failures >= self.threshold:
                self.state, self._next_probe = OPEN, self._clock() + self.reset_s
        if was == CLOSED and self.state == OPEN:
            log.warning("circuit open after %d consecutive model backend failures (%s); scoring answers "
                        "503 and /ready 503, probe in %g s", self.failures, text, self.reset_s)
        elif was == HALF_OPEN:
            log.info("circuit stays open: the probe failed (%s); next probe in %g s", text, self.reset_s)
