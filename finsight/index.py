"""The sentiment index: scored rows -> per (group..., bucket) sentiment, with no look-ahead.

A row belongs to the first bucket in which a trader could have acted on it. Daily buckets are
trading days: news at or after ``analyze.session_close`` (local time in ``analyze.timezone``)
counts for the next session, and days the calendar does not trade (weekends, holiday file) roll
forward, so Saturday's news lands on Monday. Intraday buckets are labelled by their end, the
moment their value is known, and a row stamped exactly on a boundary goes to the next one.

Aggregation is chunk by chunk (sums per cell), so memory grows with groups x buckets, not rows.
Used by ``finsight analyze --time-column`` and serve's ``POST /v1/index``.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from finsight.errors import DataError
from finsight.labels import LABELS

if TYPE_CHECKING:
    import pandas as pd

    from finsight.config import AnalyzeSettings

TIME_ERROR = "unparseable time"
BUCKET = "bucket"
_DAY_NS = 86_400 * 10**9
# An epoch value at or past this is milliseconds: 1e11 seconds is the year 5138.
_MS_FROM = 1e11
_ZONE = r"(?:[zZ]|[+-]\d\d(?::?\d\d)?)$"  # an ISO 8601 offset at the end
_SUMS = ["count", "errors", "scored", "sentiment_sum", "weight_sum", "weighted_sum",
         *(f"n_{label}" for label in LABELS)]


@dataclass(frozen=True)
class Bucketing:
    """How timestamps become buckets; built (and every setting checked) before a model loads."""

    daily: bool
    step_ns: int  # the intraday step; a day for 1d
    timezone: str
    close_ns: int  # 1d: local time of day from which news counts for the next session
    weekmask: str
    holidays: tuple[str, ...]  # YYYY-MM-DD

    @classmethod
    def from_settings(cls, opts: AnalyzeSettings) -> "Bucketing":
        daily, step = _parse_bucket(opts.time_bucket)
        close = _parse_close(opts.session_close) if daily else 0
        weekmask, holidays = _parse_calendar(opts.calendar)
        return cls(daily=daily, step_ns=step, timezone=_check_timezone(opts.timezone),
                   close_ns=close, weekmask=weekmask, holidays=holidays)

    def assign(self, values: "pd.Series", *, column: str = "time", seen: set | None = None) -> "pd.Series":
        """The bucket of every value (NaT where it does not parse): session dates for 1d,
        bucket ends in ``timezone`` otherwise. ``seen``: see :func:`parse_times`."""
        utc = parse_times(values, self.timezone, column=column, seen=seen)
        return self._daily(utc) if self.daily else self._intraday(utc)

    def _daily(self, utc: "pd.Series") -> "pd.Series":
        import pandas as pd

        wall = utc.dt.tz_convert(self.timezone).dt.tz_localize(None).array.as_unit("ns").asi8
        bad = utc.isna().to_numpy()
        day = np.where(bad, 0, wall) // _DAY_NS
        day = day + ((np.where(bad, 0, wall) - day * _DAY_NS) >= self.close_ns) if self.close_ns else day
        session = np.busday_offset(day.astype("datetime64[D]"), 0, roll="forward",
                                   weekmask=self.weekmask, holidays=list(self.holidays))
        out = session.astype("datetime64[ns]")
        out[bad] = np.datetime64("NaT")
        return pd.Series(out, index=utc.index, name=BUCKET)

    def _intraday(self, utc: "pd.Series") -> "pd.Series":
        import pandas as pd

        # Aligned on the epoch in UTC: floor() in local time would meet DST's repeated hour.
        ns = utc.array.as_unit("ns").asi8
        ends = (ns // self.step_ns + 1) * self.step_ns
        out = pd.Series(pd.to_datetime(ends, unit="ns", utc=True), index=utc.index, name=BUCKET)
        out[utc.isna().to_numpy()] = pd.NaT
        return out.dt.tz_convert(self.timezone)

    def labels(self, ns: np.ndarray) -> "pd.Series":
        """Buckets from nanoseconds since the epoch: session dates, or ends in ``timezone``."""
        import pandas as pd

        if self.daily:
            return pd.Series(ns.astype("datetime64[ns]"), name=BUCKET)
        return pd.Series(pd.to_datetime(ns, unit="ns", utc=True), name=BUCKET).dt.tz_convert(self.timezone)

    def grid(self, first: Any, last: Any) -> "pd.Series":
        """Every bucket from ``first`` to ``last``: the trading days, or every step."""
        import pandas as pd

        if self.daily:
            days = np.arange(np.datetime64(first, "D"), np.datetime64(last, "D") + 1)
            days = days[np.is_busday(days, weekmask=self.weekmask, holidays=list(self.holidays))]
            return pd.Series(days.astype("datetime64[ns]"), name=BUCKET)
        return pd.Series(pd.date_range(first, last, freq=pd.Timedelta(self.step_ns, "ns")), name=BUCKET)


def _parse_bucket(text: str) -> tuple[bool, int]:
    import pandas as pd

    fix = "pass --bucket 1d (trading days) or an intraday step such as 1h, 15min, 30s"
    try:
        step = pd.Timedelta(str(text).strip())
    except ValueError:
        raise DataError(f"--bucket (analyze.time_bucket) {text!r} is not a bucket; {fix}") from None
    ns = int(step.value)
    if ns == _DAY_NS:
        return True, ns
    if ns <= 0 or ns > _DAY_NS or _DAY_NS % ns:
        raise DataError(f"--bucket (analyze.time_bucket) {text!r}: a bucket is 1d or a step that divides "
                        f"a day; {fix}")
    return False, ns


def _parse_close(text: str | None) -> int:
    if not text:
        return 0
    try:
        close = dt.time.fromisoformat(str(text).strip())
    except ValueError:
        raise DataError(f"--session-close (analyze.session_close) {text!r} is not a time of day; "
                        "pass HH:MM in analyze.timezone, e.g. 16:00") from None
    return ((close.hour * 60 + close.minute) * 60 + close.second) * 10**9


def _check_timezone(name: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
        return name
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    zones = sorted(zoneinfo.available_timezones())
    folded = {zone.casefold(): zone for zone in zones}
    close = difflib.get_close_matches(name.casefold().replace(" ", "_"), list(folded), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(folded[c] for c in close)}?" if close else \
        "; pass an IANA name such as America/New_York, Europe/London or UTC"
    raise DataError(f"--timezone (analyze.timezone) {name!r} is not a time zone{hint}")


def _parse_calendar(calendar: str) -> tuple[str, tuple[str, ...]]:
    if calendar == "weekdays":
        return "1111100", ()
    if calendar == "all":
        return "1111111", ()
    path = Path(calendar)
    if not path.is_file():
        raise DataError(f"--calendar (analyze.calendar) {calendar!r}: no such file; pass weekdays, all, "
                        "or a file of holiday dates (YYYY-MM-DD, one a line)")
    holidays = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip().split(",", 1)[0].strip()
        if not text:
            continue
        try:
            holidays.append(dt.date.fromisoformat(text).isoformat())
        except ValueError:
            raise DataError(f"{path}:{number}: {text!r} is not a date; holiday files hold one "
                            "YYYY-MM-DD a line (# starts a comment)") from None
    return "1111100", tuple(holidays)


# ---------------------------------------------------------------- parsing


def parse_times(values: "pd.Series", timezone: str, *, column: str = "time", seen: set | None = None) -> "pd.Series":
    """UTC timestamps (NaT where a value does not parse): numbers are epoch seconds, or
    milliseconds from 1e11 on; text is ISO 8601, with an offset or (all of them) without one,
    then in ``timezone``; text that is digits only is epoch too. ``seen`` collects which of
    "offset"/"no offset" earlier chunks of the same column had: a file mixing them is refused
    even when each chunk is uniform."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return _epoch(values.astype("float64"))
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return _localize(values, timezone)
    text = values if pd.api.types.is_string_dtype(values.dtype) else values.astype("str")
    aware = _has_offset(text)
    if seen is not None:
        _refuse_mixed_chunks(text, aware, column, seen)
    if aware.any():
        _refuse_mixed(text, aware, column)
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    else:
        parsed = _localize(pd.to_datetime(text, format="ISO8601", errors="coerce"), timezone)
    # The ISO parser reads years outside what nanoseconds hold ("-1.9" is year -1, September):
    # those are NaT here, then tried as epoch numbers below.
    parsed = parsed.where((parsed >= pd.Timestamp.min.tz_localize("UTC")) & (parsed <= pd.Timestamp.max.tz_localize("UTC")))
    parsed = parsed.dt.as_unit("ns")
    missing = parsed.isna() & text.notna()
    if missing.any():
        parsed[missing] = _epoch(pd.to_numeric(text[missing], errors="coerce"))
    return parsed


def _has_offset(text: "pd.Series") -> np.ndarray:
    """Which values end in an ISO 8601 offset; Arrow's regex is about 3x pandas' on Arrow strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        values = pa.array(text.array) if not hasattr(text.array, "__arrow_array__") else text.array.__arrow_array__()
        return pc.fill_null(pc.match_substring_regex(values, _ZONE), False).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return text.str.contains(_ZONE, regex=True, na=False).to_numpy(dtype=bool)


def _epoch(numbers: "pd.Series") -> "pd.Series":
    import pandas as pd

    values = numbers.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(over="ignore", invalid="ignore"):  # absurd numbers become inf: NaT below
        ns = np.where(np.abs(values) >= _MS_FROM, values * 1e6, values * 1e9)
    ok = np.isfinite(ns) & (np.abs(ns) < 9.2e18)
    out = pd.Series(pd.to_datetime(np.where(ok, ns, 0).astype("int64"), unit="ns", utc=True), index=numbers.index)
    out[~ok] = pd.NaT
    return out


def _localize(naive: "pd.Series", timezone: str) -> "pd.Series":
    # The repeated hour of a DST change: the later instant (ambiguous=False is standard time),
    # and a skipped one moves forward: either way never earlier than the news could be known.
    return naive.dt.tz_localize(timezone, ambiguous=np.zeros(len(naive), dtype=bool),
                                nonexistent="shift_forward").dt.tz_convert("UTC")


def _refuse_mixed_chunks(text: "pd.Series", aware: np.ndarray, column: str, seen: set) -> None:
    if aware.all() and seen <= {"offset"}:  # the usual case, without a second regex
        seen.add("offset")
        return
    naive = ~aware & text.str.contains(r"\d[T ]\d", regex=True, na=False).to_numpy(dtype=bool)
    kinds = ({"offset"} if aware.any() else set()) | ({"no offset"} if naive.any() else set())
    if kinds and seen and kinds != seen and len(kinds | seen) == 2:
        example = text.iloc[int(np.flatnonzero(naive if "no offset" in kinds else aware)[0])]
        raise DataError(f"column {column!r} mixes zones: {example!r} has {'no offset' if 'no offset' in kinds else 'an offset'} "
                        f"while earlier rows {'have one' if 'offset' in seen else 'have none'}; give every "
                        "timestamp an offset, or none (then --timezone applies)")
    seen |= kinds


def _refuse_mixed(text: "pd.Series", aware: np.ndarray, column: str) -> None:
    if aware.all():
        return
    naive = ~aware & text.str.contains(r"\d[T ]\d", regex=True, na=False).to_numpy(dtype=bool)
    if naive.any():
        raise DataError(f"column {column!r} mixes zones: {text.iloc[int(np.flatnonzero(naive)[0])]!r} has "
                        "no offset while other timestamps have one; give every timestamp an offset, or "
                        "none (then --timezone applies)")


# ---------------------------------------------------------------- aggregation


class SentimentIndex:
    """Per (group..., bucket): count, label shares, mean and confidence-weighted sentiment,
    errors; optional rolling and exponentially weighted sentiment; chunk by chunk."""

    def __init__(self, columns: Sequence[str], bucketing: Bucketing, opts: AnalyzeSettings):
        self.columns = list(columns)
        self.bucketing = bucketing
        self.rolling = opts.rolling
        self.halflife = opts.halflife
        self.fill = opts.fill
        self.time_errors = 0
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._known: "pd.Index | None" = None  # every group seen, in order of appearance
        self._merged = self._pending = 0  # cells in the merged part / in the parts since
        self._zones: set = set()  # "offset" / "no offset": what the time column's text has had

    def assign(self, values: "pd.Series", *, column: str = "time") -> "pd.Series":
        """:meth:`Bucketing.assign`, refusing a column whose chunks mix offset and no offset."""
        return self.bucketing.assign(values, column=column, seen=self._zones)

    @property
    def keys(self) -> list[str]:
        return [*self.columns, BUCKET]

    def update(self, frame: "pd.DataFrame", buckets: "pd.Series") -> None:
        """Add one chunk of scored rows (``label``, ``sentiment``, ``confidence``, ``error``)."""
        import pandas as pd

        timed = buckets.notna().to_numpy()
        self.time_errors += int((~timed).sum())
        scored = frame["error"].isna().to_numpy() & timed
        sentiment = np.nan_to_num(frame["sentiment"].to_numpy(dtype="float64", na_value=np.nan)) * scored
        weight = np.nan_to_num(frame["confidence"].to_numpy(dtype="float64", na_value=np.nan)) * scored
        label = pd.Categorical(frame["label"], categories=LABELS).codes
        values = [np.ones(len(frame)), ~scored, scored, sentiment, weight, weight * sentiment,
                  *((label == i) & scored for i in range(len(LABELS)))]
        # One int64 key per (group, bucket) cell: numpy sums these far faster than a groupby.
        key = (self._group_codes(frame) << 32) + (self._bucket_codes(buckets) + (1 << 31))
        key = key[timed]
        cells, inverse = np.unique(key, return_inverse=True)
        sums = np.column_stack([np.bincount(inverse, weights=np.asarray(v, dtype="float64")[timed],
                                            minlength=len(cells)) for v in values])
        self._parts.append((cells, sums))
        self._pending += len(cells)
        # Merged when the unmerged cells outnumber twice the merged ones (and 256k): memory stays
        # bounded by groups x buckets, not rows, and each merge's sort is paid rarely.
        if self._pending > max(2 * self._merged, 1 << 18):
            self._parts = [self._reduce()]
            self._merged, self._pending = len(self._parts[0][0]), 0

    def _group_codes(self, frame: "pd.DataFrame") -> np.ndarray:
        """Each row's group as a code that stays the same across chunks."""
        import pandas as pd

        if not self.columns:
            return np.zeros(len(frame), dtype=np.int64)
        if len(self.columns) == 1:
            codes, uniques = pd.factorize(frame[self.columns[0]], use_na_sentinel=False)
            uniques = pd.Index(uniques)
        else:
            codes, uniques = pd.MultiIndex.from_frame(frame[self.columns]).factorize(use_na_sentinel=False)
        if self._known is None:
            self._known = uniques
        known = self._known.get_indexer(uniques)
        if (known < 0).any():
            self._known = self._known.append(uniques[known < 0])
            known = self._known.get_indexer(uniques)
        return known.astype(np.int64)[codes]

    def _bucket_codes(self, buckets: "pd.Series") -> np.ndarray:
        ns = buckets.array.as_unit("ns").asi8  # UTC for zoned intraday buckets, wall dates for 1d
        return np.where(buckets.isna().to_numpy(), 0, ns // self.bucketing.step_ns)

    def _reduce(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.concatenate([cells for cells, _ in self._parts])
        cells, inverse = np.unique(keys, return_inverse=True)
        parts = np.concatenate([part for _, part in self._parts])
        sums = np.column_stack([np.bincount(inverse, weights=parts[:, i], minlength=len(cells))
                                for i in range(parts.shape[1])])
        return cells, sums

    def _table(self) -> "pd.DataFrame":
        """The cells as a frame: the group columns, the bucket, the sums."""
        import pandas as pd

        cells, sums = self._reduce()
        steps = (cells & ((1 << 32) - 1)) - (1 << 31)
        total = pd.DataFrame(sums, columns=_SUMS)
        for name in _SUMS:
            if name.startswith("n_") or name in ("count", "errors", "scored"):
                total[name] = total[name].round().astype(np.int64)
        groups = self._known[cells >> 32] if self._known is not None else None
        if len(self.columns) == 1:
            total.insert(0, self.columns[0], pd.Series(groups).reset_index(drop=True))
        elif self.columns:
            for i, name in enumerate(self.columns):
                total.insert(i, name, pd.Series(groups.get_level_values(i)).reset_index(drop=True))
        total.insert(len(self.columns), BUCKET, self.bucketing.labels(steps * self.bucketing.step_ns))
        return total

    def result(self) -> "pd.DataFrame":
        """The index, sorted by group then bucket."""
        import pandas as pd

        if not any(len(cells) for cells, _ in self._parts):
            return pd.DataFrame(columns=[*self.keys, "count"])
        total = self._table()
        grid = self._on_grid(total) if (self.fill or self.rolling or self.halflife) else \
            total.sort_values(self.keys, ignore_index=True)
        out = grid[self.keys].copy()
        scored = grid["scored"].where(grid["scored"] > 0)
        out["count"] = grid["count"].to_numpy()
        for name in LABELS:
            out[f"share_{name}"] = (grid[f"n_{name}"] / scored).to_numpy()
        out["mean_sentiment"] = (grid["sentiment_sum"] / scored).to_numpy()
        out["weighted_sentiment"] = (grid["weighted_sum"] / grid["weight_sum"].where(grid["weight_sum"] > 0)).to_numpy()
        out["errors"] = grid["errors"].to_numpy()
        if self.rolling or self.halflife:
            self._windows(grid, out)
        if not self.fill and "_present" in grid:
            out = out[grid["_present"].to_numpy()].reset_index(drop=True)
        return out

    def _on_grid(self, total: "pd.DataFrame") -> "pd.DataFrame":
        """Every group x every bucket from the first to the last (absent cells zero), sorted:
        the regular series rolling windows count buckets on, so 5 means five trading days."""
        import pandas as pd

        total = total.assign(_present=True)
        buckets = self.bucketing.grid(total[BUCKET].min(), total[BUCKET].max())
        if self.columns:
            groups = total[self.columns].drop_duplicates().sort_values(self.columns, ignore_index=True)
            cells = groups.merge(buckets.to_frame(), how="cross")
        else:
            cells = buckets.to_frame()
        grid = cells.merge(total, on=self.keys, how="left", sort=False)
        grid[_SUMS] = grid[_SUMS].fillna(0)
        grid["_present"] = grid["_present"].fillna(False).astype(bool)
        self._width = len(buckets)
        return grid

    def _windows(self, grid: "pd.DataFrame", out: "pd.DataFrame") -> None:
        """Count-weighted windows along each group's row of buckets (the grid is group-major)."""
        import pandas as pd

        sums = grid["sentiment_sum"].to_numpy(dtype="float64").reshape(-1, self._width)
        counts = grid["scored"].to_numpy(dtype="float64").reshape(-1, self._width)
        if self.rolling:
            out["rolling_sentiment"] = _ratio(_window_sum(sums, self.rolling), _window_sum(counts, self.rolling))
        if self.halflife:
            def ewm(values: np.ndarray) -> np.ndarray:
                return pd.DataFrame(values.T).ewm(halflife=self.halflife).mean().to_numpy().T

            out["ewm_sentiment"] = _ratio(ewm(sums), ewm(counts))


def _window_sum(values: np.ndarray, n: int) -> np.ndarray:
    total = np.cumsum(values, axis=1)
    total[:, n:] = total[:, n:] - total[:, :-n].copy()
    return total


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, num / np.where(den > 1e-12, den, 1.0), np.nan).ravel()


# ---------------------------------------------------------------- plot


def plot_index(index: "pd.DataFrame", path: Path, columns: Sequence[str], *, groups: int = 8,
               size: tuple[int, int] = (1200, 600)) -> Path:
    """The index over time, one line per group (the ``groups`` with most rows); written atomically."""
    import os
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    value = next(c for c in ("ewm_sentiment", "rolling_sentiment", "mean_sentiment") if c in index)
    fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    ax = fig.subplots()
    if columns:
        top = index.groupby(list(columns), dropna=False)["count"].sum().nlargest(groups).index
        for key in top:
            key = key if isinstance(key, tuple) else (key,)
            rows = np.logical_and.reduce([index[c].eq(k).to_numpy() for c, k in zip(columns, key)])
            part = index[rows]
            ax.plot(part[BUCKET], part[value], label="/".join(map(str, key)), linewidth=1.2)
        ax.legend(loc="upper left", fontsize=8, ncol=2)
    else:
        ax.plot(index[BUCKET], index[value], linewidth=1.2)
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.set_ylabel(value.replace("_", " "))
    ax.set_title(f"finsight sentiment index ({value})")
    fig.autofmt_xdate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
