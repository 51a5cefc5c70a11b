"""``POST /v1/index``: records with a time (and a group) scored and bucketed into the sentiment
index by the code `analyze --time-column` runs (:mod:`finsight.index`).

Annotations here are evaluated (no ``from __future__ import annotations``): litestar and msgspec
read the request type from them.
"""

import asyncio
import zoneinfo
from typing import Annotated, Any, Literal

import msgspec
from litestar import post
from litestar.exceptions import HTTPException
from msgspec import Meta, Struct

from finsight.config import ServeSettings
from finsight.errors import DataError
from finsight.serve.schemas import ModelRef
from finsight.serve.service import Service

PATH = "/v1/index"
# The buckets a request may ask for, listed so the schema says what is accepted (the CLI takes
# any step that divides a day).
BUCKETS = ("1d", "12h", "8h", "6h", "4h", "3h", "2h", "1h", "30min", "20min", "15min", "10min", "5min", "1min")


class IndexRow(Struct):
    group: str | None
    bucket: str  # ISO 8601: the session date (1d) or the bucket's end with its offset
    count: int
    share_negative: float | None
    share_neutral: float | None
    share_positive: float | None
    mean_sentiment: float | None
    weighted_sentiment: float | None
    errors: int
    rolling_sentiment: float | None = None
    ewm_sentiment: float | None = None


class IndexResponse(Struct):
    rows: list[IndexRow]
    time_errors: int  # records whose time did not parse: not scored, in no bucket
    model: ModelRef


def index_request_types(opts: ServeSettings) -> dict[str, type]:
    """The request Structs (the body, one record) with this server's limits; the index options
    default to the server's ``analyze.*``."""
    text = Annotated[str, Meta(max_length=opts.max_text_chars)]
    record = msgspec.defstruct("IndexRecord", [("text", text), ("time", str | float),
                                               ("group", str | None, None)], forbid_unknown_fields=True)
    records = Annotated[list[record], Meta(max_length=opts.max_texts_per_request)]
    request = msgspec.defstruct("IndexRequest", [
        ("records", records), ("bucket", Literal[BUCKETS] | None, None),
        ("timezone", Literal[tuple(sorted(zoneinfo.available_timezones()))] | None, None),
        ("session_close", Annotated[str, Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] | None, None),
        ("calendar", Literal["weekdays", "all"] | None, None),
        ("rolling", Annotated[int, Meta(ge=1, le=100_000)] | None, None),
        ("halflife", Annotated[float, Meta(ge=0.01, le=1e6)] | None, None)],
        forbid_unknown_fields=True)
    return {"index": request, "index_record": record}


def index_route(request_type: type, *, responses: Any, security: Any) -> Any:
    @post(PATH, status_code=200, responses=responses, security=security,
          summary="Score records with a time and a group into the sentiment index (like analyze "
                  "--time-column --group-by): trading-day buckets, session close, windows")
    async def index(data: request_type, service: Service) -> IndexResponse:  # type: ignore[valid-type]
        scores = await service.score([r.text for r in data.records])
        # pandas work off the event loop: a request of many records must not stall the others
        return await asyncio.to_thread(_build, data, scores, service)

    return index


def _build(data: Any, scores: list, service: Service) -> IndexResponse:
    from finsight.extras import require

    require("pandas", needed_by=f"POST {PATH}")
    import pandas as pd

    from finsight.index import Bucketing, SentimentIndex

    # no `fill` here: the server's analyze.fill applies (JSON's lax 0/1 would pass for a bool)
    asked = {key: getattr(data, key) for key in ("timezone", "session_close", "calendar", "rolling",
                                                 "halflife")}
    if data.bucket is not None:
        asked["time_bucket"] = data.bucket
    opts = service.settings.analyze.model_copy(update={k: v for k, v in asked.items() if v is not None})
    if opts.calendar not in ("weekdays", "all"):
        opts = opts.model_copy(update={"calendar": "weekdays"})  # a server's holiday file is not asked for
    try:
        index = SentimentIndex(["group"], Bucketing.from_settings(opts), opts)
        times = pd.Series([r.time for r in data.records], dtype=object)
        numeric = all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times)
        buckets = index.bucketing.assign(times.astype("float64") if numeric else times.astype("str"), column="time")
    except DataError as exc:  # a well-formed body asking for something that does not exist: 422
        raise HTTPException(status_code=422, detail=str(exc).replace("--", "")) from None
    frame = pd.DataFrame({"group": [r.group for r in data.records], "label": [s.label for s in scores],
                          "confidence": [s.confidence for s in scores], "sentiment": [s.sentiment for s in scores],
                          "error": [s.error for s in scores]})
    frame["confidence"] = frame["confidence"].astype("float64")
    frame["sentiment"] = frame["sentiment"].astype("float64")
    index.update(frame, buckets)
    table = index.result() if len(frame) else pd.DataFrame()
    daily = index.bucketing.daily
    return IndexResponse(rows=[_row(record, daily) for record in table.to_dict("records")],
                         time_errors=index.time_errors, model=service.model_ref)


def _row(record: dict, daily: bool) -> IndexRow:
    def number(value: Any) -> float | None:
        return None if value is None or value != value else float(value)

    group = record["group"] if isinstance(record["group"], str) else None
    bucket = record["bucket"].date().isoformat() if daily else record["bucket"].isoformat()
    return IndexRow(group=group, bucket=bucket, count=int(record["count"]),
                    errors=int(record["errors"]),
                    **{k: number(v) for k, v in record.items()
                       if k not in ("group", "bucket", "count", "errors")})
