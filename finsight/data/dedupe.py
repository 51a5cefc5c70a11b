"""Collapse exact and normalised duplicates; resolve one text carrying different labels.

Runs before the split, over all inputs together, so no normalised text can reach two
splits. Rows are visited in ``_order``: the first row of a group is the one kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from finsight.data.clean import normalized_key

if TYPE_CHECKING:
    import pandas as pd

EXAMPLES = 20


def dedupe(frame: "pd.DataFrame", *, rule: str) -> tuple["pd.DataFrame", dict[str, Any]]:
    """Rows kept (one per normalised text) and a report of what was removed and why.

    ``rule``: ``majority`` keeps a conflicting text with its most frequent label (a tie has
    no majority, so the text is dropped); ``drop`` drops every conflicting text.
    """
    frame = frame.assign(_key=normalized_key(frame["text"])).sort_values("_order", kind="stable")
    losers, conflicts = _conflicts(frame, rule)
    frame = frame[~losers]
    exact = frame.duplicated("text")
    near = frame.duplicated("_key") & ~exact
    report = {
        "exact": int(exact.sum()),
        "normalized": int(near.sum()),
        "groups": int(frame.loc[frame.duplicated("_key", keep=False), "_key"].nunique()),
        "examples": _examples(frame, exact, near),
    }
    kept = frame[~(exact | near)].drop(columns="_key")
    return kept, {"duplicates": report, "conflicts": conflicts}


def _examples(frame: "pd.DataFrame", exact: "pd.Series", near: "pd.Series") -> list[dict[str, Any]]:
    """The first removed rows of each kind, each with the row that was kept in its place."""
    kept = frame[~frame.duplicated("_key")].set_index("_key")
    examples = []
    for kind, mask in (("exact", exact), ("normalized", near)):
        for _, row in frame[mask].head(EXAMPLES // 2).iterrows():
            first = kept.loc[row["_key"]]
            examples.append({"kind": kind, "text": row["text"],
                             "removed": {"input": int(row["_source"]), "line": int(row["_line"])},
                             "kept": {"input": int(first["_source"]), "line": int(first["_line"]),
                                      "text": first["text"]}})
    return examples


def _conflicts(frame: "pd.DataFrame", rule: str) -> tuple["pd.Series", dict[str, Any]]:
    import pandas as pd

    n_labels = frame.groupby("_key", sort=False)["label"].transform("nunique")
    conflicted = frame[n_labels > 1]
    report: dict[str, Any] = {"rule": rule, "groups": 0, "resolved": 0, "dropped_groups": 0,
                              "rows_dropped": 0, "examples": []}
    if conflicted.empty:
        return n_labels > 1, report
    counts = conflicted.groupby(["_key", "label"], sort=False).size().unstack(fill_value=0)
    top = counts.max(axis=1)
    unique_top = counts.eq(top, axis=0).sum(axis=1) == 1
    winner = counts.idxmax(axis=1).where(unique_top & (rule == "majority"))
    losers = (n_labels > 1) & (frame["label"] != frame["_key"].map(winner).fillna(""))
    report.update(groups=len(counts), resolved=int(winner.notna().sum()),
                  dropped_groups=int(winner.isna().sum()), rows_dropped=int(losers.sum()))
    first_text = conflicted.drop_duplicates("_key").set_index("_key")["text"]
    report["examples"] = [
        {"text": first_text[key], "labels": {k: int(v) for k, v in counts.loc[key].items() if v},
         "kept": None if pd.isna(winner[key]) else winner[key]}
        for key in counts.index[:EXAMPLES]]
    return losers, report
