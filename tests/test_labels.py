"""Labels: synonyms, integer codes, --label-map, and unknown values reported, never guessed."""

from __future__ import annotations

import pandas as pd
import pytest

from finsight.errors import ConfigError, DataError, ModelError
from finsight.labels import LABELS, canonical_order, label_key, map_labels, to_canonical


def test_canonical_names_and_order():
    assert LABELS == ("negative", "neutral", "positive")


@pytest.mark.parametrize("raw, expected", [
    ("negative", "negative"), ("NEG", "negative"), (" Bearish ", "negative"), ("-1", "negative"),
    (-1, "negative"), ("neutral", "neutral"), ("Neu", "neutral"), (0, "neutral"), ("0.0", "neutral"),
    ("positive", "positive"), ("pos", "positive"), ("BULLISH", "positive"), ("+1", "positive"),
    (1.0, "positive"),
])
def test_builtin_synonyms_any_case(raw, expected):
    assert to_canonical(pd.Series([raw], dtype=object)).tolist() == [expected]


def test_label_map_overrides_and_extends():
    raw = pd.Series(["Strong Buy", "sell", "hold", "sell"])
    mapped, used = map_labels(raw, {"strong buy": "positive", "SELL": "negative", "hold": "neu"})
    assert mapped.tolist() == ["positive", "negative", "neutral", "negative"]
    assert used["sell"] == {"label": "negative", "rows": 2}


def test_unknown_labels_list_values_and_counts():
    raw = pd.Series(["pos", "great", "great", "meh", None])
    with pytest.raises(DataError) as info:
        to_canonical(raw, source="news.csv")
    message = str(info.value)
    assert "news.csv" in message
    assert "'great' (2 rows)" in message and "'meh' (1 row)" in message
    assert "<missing>" in message and "--label-map" in message
    assert "'pos'" not in message


def test_integer_codes_outside_minus_one_to_one_are_never_guessed():
    # 0/1/2 is a different convention from -1/0/1: none of the codes may be mapped by default.
    raw = pd.Series([0, 1, 2, 2])
    with pytest.raises(DataError) as info:
        to_canonical(raw)
    for code in ("'0'", "'1'", "'2' (2 rows)"):
        assert code in str(info.value)
    # mapping only some of the codes still leaves the others unknown
    with pytest.raises(DataError, match="'0'"):
        to_canonical(raw, {"2": "neutral", "1": "positive"})
    mapped = to_canonical(raw, {"0": "negative", "1": "positive", "2": "neutral"})
    assert mapped.tolist() == ["negative", "positive", "neutral", "neutral"]


def test_label_map_target_must_be_a_label():
    with pytest.raises(ConfigError, match="'2=neutrl'"):
        to_canonical(pd.Series(["2"]), {"2": "neutrl"})
    with pytest.raises(ConfigError, match="unknown label"):
        to_canonical(pd.Series(["2"]), {"2": "1"})


def test_label_key_normalises_numbers_and_case():
    assert label_key(" 1.0 ") == label_key(1) == "1"
    assert label_key("Bullish") == "bullish"
    assert label_key(float("nan")) == label_key("") == "<missing>"


def test_canonical_order_reorders_columns():
    assert canonical_order(["positive", "negative", "neutral"]).tolist() == [1, 2, 0]
    assert canonical_order(["Bearish", "neu", "bullish"]).tolist() == [0, 1, 2]
    with pytest.raises(ModelError):
        canonical_order(["positive", "negative", "LABEL_2"])
