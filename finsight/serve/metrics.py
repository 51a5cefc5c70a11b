"""Prometheus metrics beyond litestar's per-request ones (requests and latency by route and status).

Metrics live in prometheus_client's default registry, once per process (apps built in the same
process, as in tests, share them). With ``serve.workers`` > 1 each worker exports its own
unless ``PROMETHEUS_MULTIPROC_DIR`` is set.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

PREFIX = "finsight"
# Request latency buckets (seconds): a cached hit is ~1 ms, a busy batch a few hundred.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@lru_cache(maxsize=None)
def metrics() -> dict[str, Any]:
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "batch_size": Histogram(f"{PREFIX}_batch_size", "Texts per model call", buckets=BATCH_BUCKETS),
        "batch_requests": Histogram(f"{PREFIX}_batch_requests", "Requests sharing one model call",
                                    buckets=BATCH_BUCKETS),
        "model_calls": Counter(f"{PREFIX}_model_calls_total", "Model calls (micro-batches)"),
        "queue_depth": Gauge(f"{PREFIX}_queue_depth", "Requests waiting for the model"),
        "rejected": Counter(f"{PREFIX}_queue_rejected_total", "Requests refused with 503 (queue full)"),
        "shed": Counter(f"{PREFIX}_requests_shed_total",
                        "Requests refused with 503 on arrival (serve.max_concurrency in progress)"),
        "cache_hits": Counter(f"{PREFIX}_cache_hits_total", "Texts answered from the score cache"),
        "cache_misses": Counter(f"{PREFIX}_cache_misses_total", "Texts sent to the model"),
        "predictions": Counter(f"{PREFIX}_predictions_total", "Scored texts and documents by label",
                               ["label"]),
    }


def render() -> bytes:
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
