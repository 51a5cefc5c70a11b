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
# Model-call buckets reach past serve.request_timeout_s's default: a stuck backend shows as such.
MODEL_CALL_BUCKETS = LATENCY_BUCKETS + (30.0, 60.0)
# The top label's probability: 1/3 is a coin toss among three labels, 1.0 certainty.
CONFIDENCE_BUCKETS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


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
        **_health_metrics(),
    }


def _health_metrics() -> dict[str, Any]:
    """Model time apart from request time, what the answers look like, and backend health."""
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "model_call_seconds": Histogram(
            f"{PREFIX}_model_call_seconds", "Duration of one model call (a micro-batch, a document "
            "request, warm-up or a probe), by outcome: ok or error", ["outcome"], buckets=MODEL_CALL_BUCKETS),
        "confidence": Histogram(f"{PREFIX}_confidence", "Confidence (top probability) of each answer, "
                                "cached ones included", buckets=CONFIDENCE_BUCKETS),
        "unscored": Counter(f"{PREFIX}_unscored_texts_total", "Texts and documents answered with an "
                            "error instead of a score, by reason: missing or empty", ["reason"]),
        "cache_hit_ratio": Gauge(f"{PREFIX}_cache_hit_ratio", "cache_hits / (cache_hits + cache_misses) "
                                 "since start (0 before the first lookup)"),
        "cache_entries": Gauge(f"{PREFIX}_cache_entries", "Entries in the score cache"),
        "deadline_exceeded": Counter(f"{PREFIX}_deadline_exceeded_total",
                                     "Requests answered 504 (serve.request_timeout_s)"),
        "dropped_texts": Counter(f"{PREFIX}_dropped_texts_total", "Queued texts dropped unscored: "
                                 "their deadline passed or their client left"),
        "backend_failures": Counter(f"{PREFIX}_backend_failures_total", "Model calls that raised"),
        "circuit_open": Gauge(f"{PREFIX}_circuit_open", "1 while the circuit breaker refuses scoring "
                              "(open or half-open), else 0"),
        "circuit_rejected": Counter(f"{PREFIX}_circuit_rejected_total",
                                    "Requests refused with 503 while the circuit was open"),
    }


def render() -> bytes:
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
