"""The sentiment index (`analyze --time-column`): sessions, zones, calendar, windows, fill, plot, bad input."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from predict_helpers import make_onnx_export

from finsight.config import load_settings
from finsight.errors import DataError
from finsight.index import Bucketing

NY = {"analyze.timezone": "America/New_York", "analyze.session_close": "16:00"}


def _bucketing(**flags) -> Bucketing:
    return Bucketing.from_settings(load_settings(flags={**NY, **flags}).analyze)


def _days(values, **flags) -> list[str]:
    buckets = _bucketing(**flags).assign(pd.Series(values))
    return [None if pd.isna(b) else b.strftime("%Y-%m-%d") for b in buckets]


# 2024-03-08 is a Friday; New York is UTC-5 then.
@pytest.mark.parametrize("after, before", [
    ("2024-03-08T16:01:00-05:00", "2024-03-08T15:59:00-05:00"),  # ISO with offset
    ("2024-03-08T21:01:00Z", "2024-03-08T20:59:00Z"),  # the same instants in UTC
    ("2024-03-08 16:01", "2024-03-08 15:59"),  # no offset: local time in analyze.timezone
    (1709931660000, 1709931540000),  # epoch milliseconds
    (1709931660, 1709931540),  # epoch seconds
    ("1709931660000", "1709931540000"),  # epoch ms as text
])
def test_after_the_friday_close_is_monday_before_it_is_friday(after, before):
    assert _days([after, before]) == ["2024-03-11", "2024-03-08"]


def test_weekend_news_lands_on_monday_and_the_close_is_in_local_time_across_dst():
    # US clocks go forward on Sunday 2024-03-10: the close is 21:00 UTC on Friday, 20:00 UTC on Monday.
    assert _days(["2024-03-09T12:00:00Z", "2024-03-10T23:00:00Z",
                  "2024-03-11T19:59:00Z", "2024-03-11T20:01:00Z"]) == \
        ["2024-03-11", "2024-03-11", "2024-03-11", "2024-03-12"]
    # ... and back on Sunday 2024-11-03: Friday's close is 20:00 UTC, Monday's 21:00 UTC.
    assert _days(["2024-11-01T20:01:00Z", "2024-11-04T20:30:00Z", "2024-11-04T21:00:00Z"]) == \
        ["2024-11-04", "2024-11-04", "2024-11-05"]


def test_intraday_buckets_are_labelled_by_their_end_across_the_repeated_hour():
    hourly = _bucketing(**{"analyze.time_bucket": "1h"})
    buckets = hourly.assign(pd.Series(
        ["2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00", "2024-11-03T02:00:00-05:00"]))
    assert [b.isoformat() for b in buckets] == [
        "2024-11-03T01:00:00-05:00", "2024-11-03T02:00:00-05:00", "2024-11-03T03:00:00-05:00"]
    # the repeated local hour without an offset: the later instant, never the earlier
    assert hourly.assign(pd.Series(["2024-11-03 01:30"]))[0].isoformat() == "2024-11-03T02:00:00-05:00"


def test_a_yaml_close_is_read_as_a_time_of_day(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("analyze:\n  session_close: 16:00\n")  # YAML 1.1: the number 960
    assert load_settings(config).analyze.session_close == "16:00"
    assert load_settings(overrides=["analyze.session_close=9:30"]).analyze.session_close == "09:30"


def test_a_holiday_file_skips_its_days(tmp_path):
    holidays = tmp_path / "nyse.txt"
    holidays.write_text("# NYSE 2024\n2024-07-04  # Independence Day\n")
    assert _days(["2024-07-03T16:30:00-04:00", "2024-07-04T10:00:00-04:00"],
                 **{"analyze.calendar": str(holidays)}) == ["2024-07-05", "2024-07-05"]


def test_unparseable_times_are_nat_not_dropped():
    assert _days(["2024-03-08T10:00:00Z", "yesterday", None, ""]) == ["2024-03-08", None, None, None]


@pytest.mark.parametrize("flags, words", [
    ({"analyze.timezone": "America/NewYork"}, ["'America/NewYork'", "America/New_York"]),
    ({"analyze.timezone": "europe/london"}, ["Europe/London"]),
    ({"analyze.time_bucket": "1x"}, ["--bucket", "'1x'", "1h"]),
    ({"analyze.time_bucket": "7min"}, ["divides a day"]),
    ({"analyze.session_close": "4pm"}, ["--session-close", "HH:MM"]),
    ({"analyze.calendar": "nyse"}, ["no such file", "weekdays"]),
])
def test_bad_settings_name_the_flag_and_the_fix(flags, words):
    with pytest.raises(DataError) as info:
        _bucketing(**flags)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_a_holiday_file_with_a_bad_date_names_the_line(tmp_path):
    holidays = tmp_path / "h.txt"
    holidays.write_text("2024-07-04\n2024-13-01\n")
    with pytest.raises(DataError, match=r"h\.txt:2: '2024-13-01' is not a date"):
        _bucketing(**{"analyze.calendar": str(holidays)})


def test_mixed_zones_are_refused():
    with pytest.raises(DataError, match="mixes zones.*'2024-03-08 10:00' has no offset"):
        _bucketing().assign(pd.Series(["2024-03-08T10:00:00Z", "2024-03-08 10:00"]))


def test_mixed_zones_across_chunks_are_refused():
    from finsight.index import SentimentIndex

    opts = load_settings(flags=NY).analyze
    index = SentimentIndex([], Bucketing.from_settings(opts), opts)
    index.assign(pd.Series(["2024-03-08 10:00", "2024-03-08 11:00"]))
    with pytest.raises(DataError, match="mixes zones.*'2024-03-08T10:00:00Z' has an offset while earlier rows have none"):
        index.assign(pd.Series(["2024-03-08T10:00:00Z"]))


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def export(tmp_path_factory, trained_tiny_model_dir):
    root = tmp_path_factory.mktemp("index")
    shutil.copytree(trained_tiny_model_dir, root / "model")
    make_onnx_export(root / "model", root / "export-onnx")
    return root / "export-onnx"


@pytest.fixture(scope="module")
def news(tmp_path_factory, headlines):
    """The headlines, 3 tickers, times over six weeks in mixed zones, two unparseable."""
    rng = np.random.default_rng(7)
    frame = pd.concat([headlines] * 2, ignore_index=True)[["text"]]
    frame["ticker"] = rng.choice(["AAA", "BBB", "CCC"], len(frame))
    instants = pd.Timestamp("2024-02-26T00:00:00Z") + pd.to_timedelta(
        rng.integers(0, 42 * 86400, len(frame)), unit="s")
    zones = rng.choice(["America/New_York", "Europe/London", "Asia/Tokyo"], len(frame))
    frame["published_at"] = [t.tz_convert(z).isoformat() for t, z in zip(instants, zones)]
    frame.loc[[3, 50], "published_at"] = ["not a time", "2024-02-30T10:00:00Z"]
    path = tmp_path_factory.mktemp("news") / "news.csv"
    frame.to_csv(path, index=False)
    return frame, path


def _index(cli, export, news, out: Path, *extra: str):
    result = cli("--set", "analyze.chunk_rows=64", "analyze", news[1], "--out", out, "--model", export,
                 "--group-by", "ticker", "--time-column", "published_at", "--timezone", "America/New_York",
                 "--session-close", "16:00", *extra)
    assert result.exit_code == 0, result.output
    return pd.read_parquet(out), pd.read_parquet(out.with_name(f"{out.stem}.summary{out.suffix}"))


def test_the_index_counts_every_row_and_keeps_the_timestamp_type(cli, export, news, tmp_path):
    scored, index = _index(cli, export, news, tmp_path / "s.parquet")
    assert list(index.columns) == ["ticker", "bucket", "count", "share_negative", "share_neutral",
                                   "share_positive", "mean_sentiment", "weighted_sentiment", "errors"]
    assert pd.api.types.is_datetime64_dtype(index["bucket"])
    assert (index["bucket"].dt.dayofweek < 5).all()
    assert scored["error"].eq("unparseable time").sum() == 2 and scored.loc[[3, 50], "label"].isna().all()
    assert index["count"].sum() == len(news[0]) - 2
    expected = scored.assign(bucket=_bucketing().assign(scored["published_at"])).dropna(subset=["bucket"])
    grouped = expected.groupby(["ticker", "bucket"])
    weighted = grouped.apply(lambda g: np.average(g["sentiment"], weights=g["confidence"]), include_groups=False)
    merged = index.set_index(["ticker", "bucket"])
    np.testing.assert_allclose(merged["mean_sentiment"], grouped["sentiment"].mean().loc[merged.index], atol=1e-6)
    np.testing.assert_allclose(merged["weighted_sentiment"], weighted.loc[merged.index], atol=1e-6)


def test_rolling_and_halflife_equal_a_pandas_reference_and_fill_gives_every_bucket(cli, export, news, tmp_path):
    scored, index = _index(cli, export, news, tmp_path / "s.parquet", "--rolling", "5", "--halflife", "3",
                           "--fill")
    rows = scored.assign(bucket=_bucketing().assign(scored["published_at"])).dropna(subset=["bucket"])
    days = pd.bdate_range(rows["bucket"].min(), rows["bucket"].max())
    assert len(index) == 3 * len(days) and index.groupby("ticker")["bucket"].apply(list).map(
        lambda b: b == list(days)).all()
    for ticker, part in index.groupby("ticker"):
        mine = rows[rows["ticker"] == ticker]
        # rolling: the mean sentiment of every row in the last five trading days
        reference = [mine.loc[mine["bucket"].isin(days[max(0, i - 4):i + 1]), "sentiment"].mean()
                     for i in range(len(days))]
        np.testing.assert_allclose(part["rolling_sentiment"], reference, atol=1e-6)
        daily = mine.groupby("bucket")["sentiment"].agg(["sum", "count"]).reindex(days, fill_value=0)
        ewm = daily["sum"].ewm(halflife=3).mean() / daily["count"].ewm(halflife=3).mean()
        np.testing.assert_allclose(part["ewm_sentiment"], ewm.where(daily["count"].cumsum() > 0), atol=1e-6)
    assert index.loc[index["count"] == 0, "mean_sentiment"].isna().all()


def test_the_plot_is_a_png_of_the_expected_size(cli, export, news, tmp_path):
    plot = tmp_path / "plots" / "index.png"
    _index(cli, export, news, tmp_path / "s.parquet", "--plot", plot, "--rolling", "3")
    from PIL import Image

    with Image.open(plot) as image:
        image.verify()
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size == (1200, 600)
        # not a blank canvas: the lines drew pixels in more than two colours
        assert len(image.convert("RGB").getcolors(1 << 20)) > 10
    assert struct.unpack(">II", plot.read_bytes()[16:24]) == (1200, 600)


@pytest.mark.parametrize("flags, words", [
    (["--timezone", "America/NewYork"], ["America/New_York"]),
    (["--bucket", "one day"], ["--bucket"]),
    (["--calendar", "BAD"], ["--calendar"]),
])
def test_bad_input_is_one_red_line_and_no_output(cli, export, news, tmp_path, flags, words):
    out = tmp_path / "s.csv"
    result = cli("analyze", news[1], "--out", out, "--model", export, "--time-column", "published_at", *flags)
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and all(word in lines[0] for word in words), result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_missing_time_column_names_the_columns_there_are(cli, export, news, tmp_path):
    result = cli("analyze", news[1], "--out", tmp_path / "s.csv", "--model", export, "--time-column", "when")
    assert result.exit_code == 1 and "no time column 'when'" in result.stderr and "published_at" in result.stderr


# ---------------------------------------------------------------- POST /v1/index on a real server


@pytest.fixture(scope="module")
def server(trained_tiny_model_dir, tmp_path_factory):
    from serve_helpers import LiveServer

    live = LiveServer(trained_tiny_model_dir, tmp_path_factory.mktemp("serve") / "serve.log",
                      "analyze.timezone=America/New_York", "analyze.session_close=16:00")
    try:
        live.wait_ready()
        yield live
    finally:
        assert live.stop() == 0, live.output()


def test_the_index_over_http_is_the_cli_s(server, headlines):
    import httpx

    records = [{"text": t, "group": g, "time": when} for t, g, when in zip(
        headlines["text"][:6], ["AAA", "AAA", "AAA", "BBB", "BBB", "BBB"],
        ["2024-03-08T16:01:00-05:00", "2024-03-08T15:59:00-05:00", 1709931660000,
         "2024-03-09T12:00:00Z", "not a time", "2024-03-11T10:00:00-04:00"])]
    reply = httpx.post(f"{server.url}/v1/index", json={"records": records, "rolling": 2}, timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["time_errors"] == 1
    cells = {(row["group"], row["bucket"]): row for row in body["rows"]}
    assert sorted(cells) == [("AAA", "2024-03-08"), ("AAA", "2024-03-11"), ("BBB", "2024-03-11")]
    assert cells["AAA", "2024-03-11"]["count"] == 2 and cells["BBB", "2024-03-11"]["count"] == 2
    # the same records through the same scores: the mean is the records' mean sentiment
    scores = httpx.post(f"{server.url}/v1/predict/batch", json={"texts": [r["text"] for r in records]}).json()
    expected = np.mean([scores["results"][i]["sentiment"] for i in (0, 2)])
    assert cells["AAA", "2024-03-11"]["mean_sentiment"] == pytest.approx(expected, abs=1e-6)
    assert cells["AAA", "2024-03-11"]["rolling_sentiment"] == pytest.approx(
        np.mean([scores["results"][i]["sentiment"] for i in (0, 1, 2)]), abs=1e-6)


@pytest.mark.parametrize("body, words", [
    ({"timezone": "Mars/Olympus"}, ["timezone"]),
    ({"bucket": "fortnight"}, ["bucket"]),
    ({"session_close": "4pm"}, ["session_close"]),
    ({"calendar": "/etc/holidays.txt"}, []),  # a client names no server file
])
def test_bad_index_requests_are_refused_with_the_fix(server, body, words):
    import httpx

    reply = httpx.post(f"{server.url}/v1/index", json={"records": [{"text": "Profit rose.", "time": 0}], **body},
                       timeout=30)
    assert reply.status_code == 400, reply.text
    assert all(word in reply.text for word in words), reply.text
