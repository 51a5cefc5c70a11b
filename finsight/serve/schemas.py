"""Request and response bodies. Requests refuse unknown fields; limits come from ``serve.*``
and are declared in the OpenAPI schema (maxLength, maxItems), so clients see them up front."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import Meta, Struct

if TYPE_CHECKING:
    from finsight.config import ServeSettings


class Probabilities(Struct):
    negative: float
    neutral: float
    positive: float


class ModelRef(Struct):
    name: str
    version: str


class Score(Struct):
    """One text's scores; a text with no content gets nulls and ``error`` (as in ``analyze``)."""

    label: str | None
    confidence: float | None
    probabilities: Probabilities | None
    sentiment: float | None
    cached: bool
    error: str | None = None


class PredictResponse(Struct):
    label: str | None
    confidence: float | None
    probabilities: Probabilities | None
    sentiment: float | None
    cached: bool
    model: ModelRef
    error: str | None = None


class BatchResponse(Struct):
    results: list[Score]
    model: ModelRef


class DocumentScore(Struct):
    label: str | None
    confidence: float | None
    probabilities: Probabilities | None
    sentiment: float | None
    n_sentences: int
    error: str | None = None


class AnalyzeResponse(Struct):
    results: list[DocumentScore]
    model: ModelRef


class Cleaning(Struct):
    """The cleaning recipe every text gets before scoring (and the cache key is the cleaned text)."""

    provenance: str  # "recorded", or "default (no recipe recorded)": a hub id, an older run
    recorded: bool
    recipe: dict[str, bool]


class ModelInfo(Struct):
    name: str
    version: str
    ref: str
    backend: str
    device: str
    labels: list[str]
    max_length: int
    format: str | None
    precision: str | None
    validation: dict[str, Any] | None
    valid: bool | None
    cleaning: Cleaning


class Health(Struct):
    status: str


class CacheHealth(Struct):
    entries: int
    capacity: int  # serve.cache_size; 0: the cache is off
    hits: int  # texts answered from the cache since start
    misses: int  # texts sent to the model since start
    hit_ratio: float | None  # hits / (hits + misses); null before the first lookup


class BreakerHealth(Struct):
    state: str  # closed | open | half-open
    consecutive_failures: int
    failures_to_open: int  # serve.breaker_failures
    reset_s: float  # serve.breaker_reset_s
    probe_in_s: float | None  # seconds until a probe may close an open circuit; null while closed


class BackendFailure(Struct):
    message: str
    at: float  # unix time
    seconds_ago: float


class DetailedHealth(Struct):
    """GET /health/detailed: what runs and how it is doing; never a text or a key."""

    status: str  # ready | warming up | backend unavailable (the circuit is open)
    model: ModelRef
    backend: str
    device: str
    finsight_version: str
    uptime_s: float
    queue_depth: int  # requests waiting for the model
    in_flight: int  # requests waiting or being scored
    cache: CacheHealth
    breaker: BreakerHealth
    last_backend_error: BackendFailure | None  # kept after recovery: when and what last failed
    resident_memory_bytes: int | None
    peak_resident_memory_bytes: int | None


class ErrorBody(Struct):
    """Every non-2xx answer: the status, what went wrong and, for a limit, its key and value."""

    status_code: int
    detail: str
    limit: str | None = None
    value: float | None = None  # a number: a limit such as serve.request_timeout_s=0.5 is not whole
    extra: Any = None


def request_types(opts: ServeSettings) -> dict[str, type]:
    """The request Structs with this server's limits (``serve.*``) built into their schema."""
    text = Annotated[str, Meta(max_length=opts.max_text_chars)]
    texts = Annotated[list[text], Meta(max_length=opts.max_texts_per_request)]
    document = Annotated[str, Meta(max_length=opts.max_document_chars)]
    documents = Annotated[list[document], Meta(max_length=opts.max_texts_per_request)]

    predict = msgspec.defstruct("PredictRequest", [("text", text)], forbid_unknown_fields=True)
    batch = msgspec.defstruct("BatchRequest", [("texts", texts)], forbid_unknown_fields=True)
    analyze = msgspec.defstruct("AnalyzeRequest", [("documents", documents)], forbid_unknown_fields=True)
    return {"predict": predict, "batch": batch, "analyze": analyze}


class WordScore(Struct):
    """One word's contribution (word occlusion): the drop in the label's probability and in
    sentiment when it is removed; ``start``/``end`` index the explained (cleaned) ``text``."""

    word: str
    start: int
    end: int
    contribution: float
    sentiment: float


class SentenceExplanation(Struct):
    text: str
    label: str
    confidence: float
    sentiment: float
    words: list[WordScore]


class ExplainResponse(Struct):
    """POST /v1/explain. A text longer than the model's max length is explained sentence by
    sentence (``sentences``; ``words`` then holds every sentence's words with their share of
    the document's label). No text: nulls and ``error``, as /v1/predict."""

    label: str | None
    confidence: float | None
    sentiment: float | None
    text: str | None
    words: list[WordScore]
    sentences: list[SentenceExplanation] | None
    model: ModelRef
    error: str | None = None


def explain_request_type(opts: ServeSettings) -> type:
    """The /v1/explain body: one text, under the same limit as /v1/predict."""
    text = Annotated[str, Meta(max_length=opts.max_text_chars)]
    return msgspec.defstruct("ExplainRequest", [("text", text)], forbid_unknown_fields=True)
