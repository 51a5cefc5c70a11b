"""`prepare()`: inputs -> cleaned, deduplicated, stratified splits + data_card.json."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from finsight import __version__
from finsight.data.load import SPLITS, input_stem, read_inputs, sources_from
from finsight.errors import ConfigError, DataError
from finsight.io import check_writable
from finsight.labels import LABELS
from finsight.paths import LAYOUT
from finsight.results import PrepResult

if TYPE_CHECKING:
    import pandas as pd

    from finsight.config import DataSettings

# When pre-split inputs share a text, the evaluation copy wins: test, then validation.
_KEEP_PRIORITY = {"test": 0, "validation": 1, "train": 2}


def prepare(inputs: Sequence[str | Path], data: "DataSettings", *, workdir: Path,
            max_length: int | None = None) -> "PrepResult":
    """Read, clean, dedupe, split and write ``train/validation/test.parquet`` + the data card.

    Returns the result (its record is the data card). Nothing is written unless every step
    succeeds.
    """
    from finsight.data.card import split_summary, text_lengths
    from finsight.data.clean import clean_texts, recipe_for, text_errors
    from finsight.data.dedupe import dedupe

    if data.val_size + data.test_size >= 1.0:
        raise ConfigError(f"data.val_size + data.test_size = {data.val_size + data.test_size:g} "
                          "leaves no training rows; keep their sum below 1")
    sources = sources_from([str(p) for p in inputs], data)
    out = Path(data.out) if data.out else Path(workdir) / LAYOUT["data"] / input_stem(sources[0])
    if out.exists() and not out.is_dir():
        raise DataError(f"output {out} exists and is not a directory; pass another --out")
    check_writable(out)

    frame, records = read_inputs(sources, data)
    rows_in = len(frame)
    unusable = text_errors(frame["text"]).astype(bool)  # None -> False
    recipe = recipe_for(data)
    frame["text"] = clean_texts(frame["text"], recipe)
    empty = unusable | (frame["text"] == "")  # also: nothing left after HTML/URL removal
    frame = frame[~empty].assign(_order=_keep_order(frame[~empty]))
    frame, found = dedupe(frame, rule=data.conflict_rule)
    if frame.empty:
        raise DataError(f"no rows left after cleaning ({int(empty.sum())} empty texts) and "
                        "resolving label conflicts; check --text-column")
    pre_split = _has_splits(frame)
    frame = frame.assign(_split=_assign_splits(frame, data)).sort_values(["_source", "_line"])

    card = {
        "kind": "data_card",
        "finsight_version": __version__,
        "labels": list(LABELS),
        "inputs": records,
        "rows_in": rows_in,
        "rows_out": len(frame),
        "dropped": {"empty_text": int(empty.sum()), "conflict": found["conflicts"]["rows_dropped"],
                    "duplicate_exact": found["duplicates"]["exact"],
                    "duplicate_normalized": found["duplicates"]["normalized"]},
        "duplicates": found["duplicates"],
        "conflicts": found["conflicts"],
        "split": {"mode": "pre-split" if pre_split else "stratified",
                  "seed": data.seed, "val_size": data.val_size, "test_size": data.test_size},
        "seed": data.seed,
        # The recipe's steps (what train records in the model's finsight.json), and the two
        # descriptive keys earlier cards carried.
        "cleaning": {"unicode": "NFKC", "whitespace": "collapsed", **recipe.as_dict()},
        "columns": ["text", "label", *data.keep_columns],
        "splits": split_summary(frame, SPLITS),
        "text_length": text_lengths(frame["text"], data, max_length=max_length),
        "out": str(out.resolve()),
    }
    card["label_counts"] = {"all": _counts(frame["label"]),
                            **{name: s["labels"] for name, s in card["splits"].items()}}
    _write(frame, card, out, data.keep_columns)
    return PrepResult.from_card(card)


def _keep_order(frame: "pd.DataFrame") -> "pd.Series":
    priority = frame["_split"].map(_KEEP_PRIORITY).fillna(len(_KEEP_PRIORITY)).astype("int64")
    return priority * (len(frame) + 1) + range(len(frame))


def _has_splits(frame: "pd.DataFrame") -> bool:
    return bool(frame["_split"].notna().any())


def _assign_splits(frame: "pd.DataFrame", data: "DataSettings") -> Any:
    """Stratified split of unsplit rows; pre-split inputs keep theirs, missing ones come from train."""
    from finsight.data.split import stratified_split

    given = frame["_split"]
    if given.isna().all():
        return stratified_split(frame["label"], {"validation": data.val_size, "test": data.test_size},
                                seed=data.seed)
    if given.isna().any():
        raise DataError("some inputs are pre-split (train/validation/test) and some are not; "
                        "give every input a split (--split-from-files NAME=FILE) or none")
    present = set(given)
    if "train" not in present:
        raise DataError(f"pre-split inputs have {', '.join(sorted(present))} but no train split; "
                        "add --split-from-files train=FILE")
    carve = {name: size for name, size in (("validation", data.val_size), ("test", data.test_size))
             if name not in present}
    result = given.to_numpy(dtype=object, copy=True)
    if carve:
        train = given == "train"
        result[train.to_numpy()] = stratified_split(frame.loc[train, "label"], carve, seed=data.seed)
    return result


def _counts(labels: "pd.Series") -> dict[str, int]:
    from finsight.data.card import label_counts

    return label_counts(labels)


def _write(frame: "pd.DataFrame", card: dict, out: Path, keep: Sequence[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from finsight.artifacts import DATA_CARD
    from finsight.io import atomic_dir, atomic_write_json, sha256_file

    columns = {"text": pa.array(frame["text"].tolist(), pa.string()),
               "label": pa.array(frame["label"].tolist(), pa.string())}
    table = pa.table(columns)
    for name in keep:
        table = table.append_column(name, _arrow_column(frame[name], name))
    splits = frame["_split"].to_numpy()
    with atomic_dir(out) as tmp:
        for name in SPLITS:
            path = tmp / f"{name}.parquet"
            indices = pa.array((splits == name).nonzero()[0], pa.int64())
            pq.write_table(table.take(indices), path)
            card["splits"][name]["sha256"] = sha256_file(path)
        atomic_write_json(tmp / DATA_CARD, card)


def _arrow_column(values: "pd.Series", name: str):
    import pyarrow as pa

    try:
        return pa.Array.from_pandas(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Inputs that disagree on a column's type (int in one file, text in another): keep text.
        text = values.map(lambda v: None if v is None or v != v else str(v))
        return pa.array(text.tolist(), pa.string())
