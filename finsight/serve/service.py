"""What the routes call: clean -> cache -> micro-batched predictor -> the shared score schema.

Scoring is ``finsight.predict.scores.score_records`` on the predictor's probabilities and, for
documents, ``finsight.predict.document.score_documents``: the same functions ``analyze`` uses,
with its empty/missing-text rule, so a text gets the same label here and in a scored file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from finsight.artifacts import read_manifest
from finsight.config import Settings
from finsight.data.recipe import CleaningRecipe, clean_text
from finsight.labels import LABELS
from finsight.predict.base import Predictor
from finsight.predict.scores import score_records
from finsight.serve.batching import MicroBatcher, Observer, ScoreCache
from finsight.serve.breaker import CircuitBreaker
from finsight.serve.metrics import metrics
from finsight.serve.schemas import (
    BackendFailure, BreakerHealth, CacheHealth, Cleaning, DetailedHealth, DocumentScore, ModelInfo,
    ModelRef, Probabilities, Score)

log = logging.getLogger("finsight.serve")


def clean(texts: Sequence[str], recipe: CleaningRecipe) -> tuple[list[str], np.ndarray]:
    """``analyze``'s rule (finsight.data.clean.texts_to_score) for which texts cannot be scored,
    and every other text cleaned with the model's recipe: what the model scores, and the cache
    key, so two texts that clean to the same string share one entry and one model call."""
    from finsight.data.clean import texts_to_score

    texts, errors = texts_to_score(texts)
    return [text if error is not None else clean_text(text, recipe) for text, error in zip(texts, errors)], errors


def model_info(predictor: Predictor, settings: Settings) -> ModelInfo:
    """Name, version and export validation of what ``predictor`` runs.

    The version is a digest of the artifact's finsight.json (which, for an export, holds the
    sha256 of every file), else of its config.json and weight file sizes: a new model gives a
    new version, so cached scores of the old one are never served.
    """
    ref = str(settings.predict.model or settings.model.name_or_path)
    source = Path(str(predictor.source))
    manifest = read_manifest(source) if source.is_dir() else None
    digest = hashlib.sha256(str(predictor.name).encode())
    if manifest:
        digest.update(json.dumps(manifest, sort_keys=True, default=str).encode())
    elif source.is_dir():
        for item in sorted(source.iterdir()):
            if item.is_file():
                digest.update(f"{item.name}:{item.stat().st_size}".encode())
                if item.name == "config.json":
                    digest.update(item.read_bytes())
    else:
        digest.update(str(predictor.source).encode())
    manifest = manifest or {}
    is_export = manifest.get("kind") == "export"
    name = ref if ref.startswith("models:/") or not Path(ref).exists() else \
        "/".join(Path(ref).resolve().parts[-2:])
    return ModelInfo(
        name=name, version=digest.hexdigest()[:12], ref=ref, backend=str(predictor.name),
        device=str(predictor.device), labels=list(LABELS), max_length=int(predictor.max_length),
        format=str(manifest.get("format")) if is_export else "hf",
        precision=manifest.get("precision") if is_export else None,
        validation=manifest.get("validation") if is_export else None,
        valid=bool(manifest.get("valid")) if is_export else None,
        cleaning=cleaning_info(predictor.cleaning))


def cleaning_info(recipe: CleaningRecipe) -> Cleaning:
    return Cleaning(provenance=recipe.provenance, recorded=not recipe.assumed, recipe=recipe.as_dict())


def _probabilities(record: dict) -> Probabilities:
    return Probabilities(**{label: record["probabilities"][label] for label in LABELS})


class _Metrics(Observer):
    """The batcher's reports as Prometheus samples."""

    def __init__(self) -> None:
        self.m = metrics()

    def batch(self, texts: int, requests: int) -> None:
        self.m["batch_size"].observe(texts)
        self.m["batch_requests"].observe(requests)
        self.m["model_calls"].inc()

    def call(self, seconds: float, ok: bool) -> None:
        self.m["model_call_seconds"].labels("ok" if ok else "error").observe(seconds)
        if not ok:
            self.m["backend_failures"].inc()

    def dropped(self, texts: int) -> None:
        self.m["dropped_texts"].inc(texts)


def _count(records: list[dict], errors: Sequence) -> None:
    """Confidence of each answer and the reason of each text that could not be scored."""
    m = metrics()
    for record in records:
        m["confidence"].observe(record["confidence"])
    for error in errors:
        if error is not None:
            m["unscored"].labels(str(error).removesuffix(" text")).inc()


def resident_memory() -> tuple[int | None, int | None]:
    """(resident, peak resident) bytes of this process: /proc/self/status, else getrusage's peak."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0]) * 1024  # kB
    except (OSError, ValueError):
        pass
    if "VmHWM" not in found:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
        found["VmHWM"] = peak if sys.platform == "darwin" else peak * 1024
    return found.get("VmRSS"), found.get("VmHWM")


@dataclass
class Service:  # litestar evaluates these annotations (dependency injection): real imports above
    """One predictor behind a micro-batcher and a cache; routes get it by dependency injection."""

    predictor: Predictor
    settings: Settings
    info: ModelInfo
    batcher: MicroBatcher
    cache: ScoreCache
    breaker: CircuitBreaker
    ready: bool = False
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def build(cls, predictor: Predictor, settings: Settings) -> "Service":
        """The service over ``predictor``, as built (its serving defaults were decided before it
        was loaded: :func:`finsight.serve.defaults.for_serving`)."""
        opts = settings.serve
        info = model_info(predictor, settings)
        breaker = CircuitBreaker(opts.breaker_failures, opts.breaker_reset_s)
        batcher = MicroBatcher(predictor, max_batch_size=opts.max_batch_size, max_wait_ms=opts.max_wait_ms,
                               max_queue=opts.max_queue, timeout_s=opts.request_timeout_s, breaker=breaker,
                               observer=_Metrics())
        service = cls(predictor=predictor, settings=settings, info=info, batcher=batcher,
                      cache=ScoreCache(opts.cache_size, info.version), breaker=breaker)
        m = metrics()  # one registry per process: the gauges read the service built last
        m["queue_depth"].set_function(lambda: batcher.depth)
        m["cache_hit_ratio"].set_function(lambda: service.cache.hit_ratio or 0.0)
        m["cache_entries"].set_function(lambda: len(service.cache))
        m["circuit_open"].set_function(lambda: 0.0 if breaker.closed else 1.0)
        return service

    @property
    def model_ref(self) -> ModelRef:
        return ModelRef(name=self.info.name, version=self.info.version)

    async def warm_up(self) -> None:
        from finsight.samples import SAMPLE_SENTENCES

        n = self.settings.serve.warmup_texts
        if n:
            texts = list(SAMPLE_SENTENCES) * (n // len(SAMPLE_SENTENCES) + 1)
            # One text and a full batch: the shapes a live server sees first.
            await self.batcher.run(self.predictor.predict, texts[:1])
            await self.batcher.run(self.predictor.predict, texts[:n])
        self.ready = True

    async def score(self, texts: Sequence[str]) -> list[Score]:
        """Scores in input order; cached texts skip the model, the rest share micro-batches."""
        m = metrics()
        cleaned, errors = clean(texts, self.predictor.cleaning)
        rows: list[np.ndarray | None] = [None] * len(cleaned)
        cached = [False] * len(cleaned)
        todo: dict[str, list[int]] = {}
        for i, (text, error) in enumerate(zip(cleaned, errors)):
            if error is not None:
                continue
            row = self.cache.get(text)
            if row is not None:
                rows[i], cached[i] = row, True
            else:
                todo.setdefault(text, []).append(i)
        hits = sum(cached)
        self.cache.record(hits, len(todo))
        if hits:
            m["cache_hits"].inc(hits)
        if todo:
            m["cache_misses"].inc(len(todo))
            probs = await self.batcher.predict(list(todo))
            for (text, where), row in zip(todo.items(), probs):
                self.cache.put(text, row)
                for i in where:
                    rows[i] = row
        valid = [i for i, row in enumerate(rows) if row is not None]
        records = score_records(np.stack([rows[i] for i in valid])) if valid else []
        _count(records, errors)
        results = [Score(label=None, confidence=None, probabilities=None, sentiment=None, cached=False,
                         error=str(error)) for error in errors]
        for i, record in zip(valid, records):
            m["predictions"].labels(record["label"]).inc()
            results[i] = Score(label=record["label"], confidence=record["confidence"],
                               probabilities=_probabilities(record), sentiment=record["sentiment"],
                               cached=cached[i])
        return results

    async def score_documents(self, documents: Sequence[str]) -> list[DocumentScore]:
        """``analyze --mode document`` on each document (split, score, token-weighted mean)."""
        from finsight.predict.document import score_documents

        from finsight.data.clean import texts_to_score

        m = metrics()
        # Whole documents keep their line breaks: score_documents cleans them line by line.
        texts, errors = texts_to_score(documents)
        valid = [i for i, error in enumerate(errors) if error is None]
        results = [DocumentScore(label=None, confidence=None, probabilities=None, sentiment=None,
                                 n_sentences=0, error=str(error)) for error in errors]
        if not valid:
            _count([], errors)
            return results
        scored = await self.batcher.run(score_documents, self.predictor, [texts[i] for i in valid])
        probs, batch = scored.probs, scored.batch
        records = score_records(probs)
        _count(records, errors)
        for i, record, n in zip(valid, records, batch.n_sentences):
            m["predictions"].labels(record["label"]).inc()
            results[i] = DocumentScore(label=record["label"], confidence=record["confidence"],
                                       probabilities=_probabilities(record), sentiment=record["sentiment"],
                                       n_sentences=int(n))
        return results

    # ------------------------------------------------------------ backend health

    @property
    def status(self) -> str:
        """``ready`` (what /ready answers 200 for), ``warming up`` or ``backend unavailable``."""
        if not self.ready:
            return "warming up"
        return "ready" if self.breaker.closed else "backend unavailable"

    async def probe(self) -> None:
        """The half-open probe: one sample text through the batcher, past the cache. Its outcome
        goes to the breaker like any model call's."""
        from finsight.samples import SAMPLE_SENTENCES

        await self.batcher.predict(list(SAMPLE_SENTENCES[:1]))

    async def watch_backend(self) -> None:
        """Probe an open circuit when it is due, until cancelled: a pod out of the Service
        gets no request that could probe it, so it would never come back on its own."""
        interval = min(1.0, max(0.05, self.breaker.reset_s / 4))
        while True:
            await asyncio.sleep(interval)
            if self.breaker.probe_due():
                try:
                    await self.probe()
                except Exception as exc:  # noqa: BLE001 - a failed call is logged by the breaker
                    log.debug("backend probe: %s", exc)

    def detailed(self) -> DetailedHealth:
        """What /health/detailed answers: no texts, nothing secret."""
        from finsight import __version__

        rss, peak = resident_memory()
        error = self.breaker.last_error
        retry = self.breaker.retry_after()
        return DetailedHealth(
            status=self.status, model=self.model_ref, backend=self.info.backend, device=self.info.device,
            finsight_version=__version__, uptime_s=round(time.monotonic() - self.started, 3),
            queue_depth=self.batcher.depth, in_flight=self.batcher.in_flight,
            cache=CacheHealth(entries=len(self.cache), capacity=self.cache.size, hits=self.cache.hits,
                              misses=self.cache.misses, hit_ratio=self.cache.hit_ratio),
            breaker=BreakerHealth(state=self.breaker.state, consecutive_failures=self.breaker.failures,
                                  failures_to_open=self.breaker.threshold, reset_s=self.breaker.reset_s,
                                  probe_in_s=None if retry is None else round(retry, 3)),
            last_backend_error=None if error is None else BackendFailure(
                message=error.message, at=round(error.at, 3), seconds_ago=round(time.time() - error.at, 3)),
            resident_memory_bytes=rss, peak_resident_memory_bytes=peak)
