"""Dynamic micro-batching and the score cache.

Requests put their texts on a bounded asyncio queue; one consumer task takes what is queued
(up to ``max_batch_size`` texts, waiting up to ``max_wait_ms`` for more while other requests
are in flight) and scores the batch with one ``predictor.predict`` call on a single worker
thread, so the event loop never blocks and the predictor is never called concurrently. A full
queue raises :class:`Overloaded` (the app answers 503 + Retry-After) instead of growing latency
without bound.

Every call has a deadline (``serve.request_timeout_s``): past it the caller gets
:class:`DeadlineExceeded` (504) and its texts, if still queued, are dropped from the batch they
would have joined: no model time is spent on an answer nobody waits for. Every model call's
outcome goes to the :class:`~finsight.serve.breaker.CircuitBreaker`, which refuses new calls
while the backend keeps failing; a predictor's own exception reaches the caller as a
:class:`~finsight.errors.BackendError` (503), never a 500.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator, Sequence

import numpy as np

from finsight.errors import BackendError, FinsightError
from finsight.serve.breaker import CircuitBreaker

if TYPE_CHECKING:
    from finsight.predict.base import Predictor


class Overloaded(Exception):
    """The request queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, depth: int, retry_after: int = 1):
        super().__init__(f"the request queue is full ({depth} requests waiting, serve.max_queue); "
                         f"retry after {retry_after} s")
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """No answer within ``serve.request_timeout_s``; a still-queued request was dropped unscored."""

    def __init__(self, timeout_s: float):
        super().__init__(f"no answer within serve.request_timeout_s={timeout_s:g} s; the request "
                         "was dropped (the model backend is slow or the queue is long)")
        self.timeout_s = timeout_s


class Observer:
    """What the batcher reports, for metrics; these do nothing. ``call`` runs on the worker thread."""

    def batch(self, texts: int, requests: int) -> None:
        """One model call scored ``texts`` texts of ``requests`` requests."""

    def call(self, seconds: float, ok: bool) -> None:
        """One model call (a batch, a document request or warm-up) took ``seconds``."""

    def dropped(self, texts: int) -> None:
        """A queued request's ``texts`` were dropped unscored (its deadline passed, its client left)."""


class ScoreCache:
    """LRU of probabilities keyed on (model version, cleaned text); size 0 disables it."""

    def __init__(self, size: int, version: str):
        self.size, self.version = int(size), version
        self.hits = self.misses = 0
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    def get(self, text: str) -> np.ndarray | None:
        if not self.size:
            return None
        key = (self.version, text)
        row = self._items.get(key)
        if row is not None:
            self._items.move_to_end(key)
        return row

    def put(self, text: str, row: np.ndarray) -> None:
        if not self.size:
            return
        self._items[(self.version, text)] = row
        self._items.move_to_end((self.version, text))
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def record(self, hits: int, misses: int) -> None:
        """Count one request's lookups: texts answered from the cache, texts sent to the model."""
        self.hits += hits
        self.misses += misses

    @property
    def hit_ratio(self) -> float | None:
        """hits / (hits + misses) since start; None before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else None


@dataclass
class _Item:
    texts: Sequence[str]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


_STOP = object()


class MicroBatcher:
    """Scores texts from many concurrent requests in shared model calls."""

    def __init__(self, predictor: Predictor, *, max_batch_size: int, max_wait_ms: float, max_queue: int,
                 timeout_s: float = 10.0, breaker: CircuitBreaker | None = None,
                 observer: Observer | None = None):
        self.predictor = predictor
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self.timeout_s = float(timeout_s)
        self.breaker = breaker or CircuitBreaker(failures=5, reset_s=5.0)
        self.observer = observer or Observer()
        self._in_flight = 0  # unanswered predict() and run() calls: a batch waits only for these
        self.model_calls = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finsight-predict")
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="finsight-batcher")

    async def stop(self) -> None:
        """Finish every queued request, then stop the worker."""
        if self._task is None:
            return
        await self._queue.put(_STOP)
        await self._task
        self._executor.shutdown(wait=True)
        self._task = None

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def in_flight(self) -> int:
        """Calls of :meth:`predict` and :meth:`run` not yet answered."""
        return self._in_flight

    # ------------------------------------------------------------ calls

    async def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities ``(len(texts), 3)``, scored together with other requests' texts."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        self.breaker.admit()
        future = asyncio.get_running_loop().create_future()
        with self._counted():
            try:
                self._queue.put_nowait(_Item(texts, future))
            except asyncio.QueueFull:
                raise Overloaded(self._queue.qsize()) from None
            # On timeout (or the client leaving) the future is cancelled: the consumer skips it.
            return await self._within_deadline(future)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the predictor's thread (never beside a batch), within the deadline."""
        if self._queue is not None and self._queue.full():
            raise Overloaded(self._queue.qsize())
        self.breaker.admit()
        with self._counted():
            # A call still waiting for the thread when its deadline passes is cancelled unrun.
            call = asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn, *args)
            return await self._within_deadline(call)

    async def _within_deadline(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await asyncio.wait_for(awaitable, self.timeout_s)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(self.timeout_s) from None

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the worker thread, timed, its outcome told to the breaker."""
        started = time.perf_counter()
        try:
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - every backend failure counts, and is a BackendError
            self.observer.call(time.perf_counter() - started, False)
            self.breaker.failure(exc)
            if isinstance(exc, FinsightError):
                raise
            raise BackendError(f"the model call failed: {type(exc).__name__}: "
                               f"{(str(exc).strip() or '-').splitlines()[0]}") from exc
        self.observer.call(time.perf_counter() - started, True)
        self.breaker.success()
        return result

    @contextmanager
    def _counted(self) -> Iterator[None]:
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    # ------------------------------------------------------------ the consumer

    async def _consume(self) -> None:
        queue = self._queue
        carry = None
        while True:
            first = carry if carry is not None else await queue.get()
            carry = None
            if first is _STOP:
                return
            if self._expired(first):
                continue
            batch, n = [first], len(first.texts)
            deadline = time.perf_counter() + self.max_wait
            while n < self.max_batch_size:
                if not queue.empty():
                    item = queue.get_nowait()
                elif self._in_flight > len(batch) and time.perf_counter() < deadline:
                    try:
                        item = await asyncio.wait_for(queue.get(), deadline - time.perf_counter())
                    except asyncio.TimeoutError:
                        break
                else:
                    break
                if item is not _STOP and self._expired(item):
                    continue
                if item is _STOP or n + len(item.texts) > self.max_batch_size:
                    carry = item
                    break
                batch.append(item)
                n += len(item.texts)
            await self._score(batch)

    def _expired(self, item: _Item) -> bool:
        """A request whose caller stopped waiting (deadline, disconnect): drop it, unscored."""
        if item.future.done():
            self.observer.dropped(len(item.texts))
            return True
        return False

    async def _score(self, batch: list[_Item]) -> None:
        live = [item for item in batch if not self._expired(item)]  # expired while the batch filled
        if not live:
            return
        texts = [text for item in live for text in item.texts]
        loop = asyncio.get_running_loop()
        try:
            probs = await loop.run_in_executor(self._executor, self._call, self.predictor.predict, texts)
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request
            for item in live:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self.model_calls += 1
        self.observer.batch(len(texts), len(live))
        start = 0
        for item in live:
            end = start + len(item.texts)
            if not item.future.done():
                item.future.set_result(probs[start:end])
            start = end
