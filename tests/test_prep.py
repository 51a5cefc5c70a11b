"""`finsight prep`: cleaning, dedupe before split, stratification, pre-split inputs, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from finsight.data.clean import normalized_key
from finsight.labels import LABELS

SPLITS = ("train", "validation", "test")
COUNTS = {"negative": 40, "neutral": 70, "positive": 90}


def _base_rows() -> list[dict]:
    rows = []
    for label, n in COUNTS.items():
        rows += [{"id": f"{label[:3]}{i}", "text": f"Company {label} {i} reports quarter {i * 7}",
                  "label": label} for i in range(n)]
    return rows


def _messy_csv(path: Path) -> Path:
    """200 unique rows plus known duplicates, conflicts and empty texts."""
    rows = _base_rows()
    rows += [
        dict(rows[0], id="dup-exact"),                                               # exact
        dict(rows[1], id="dup-space", text="  Company   negative 1 reports quarter 7 "),  # exact once cleaned
        dict(rows[2], id="dup-norm", text="COMPANY negative 2, reports quarter 14!"),   # normalised
        {"id": "c1", "text": "Guidance unchanged for 2026", "label": "positive"},
        {"id": "c2", "text": "Guidance unchanged for 2026", "label": "positive"},
        {"id": "c3", "text": "guidance unchanged for 2026.", "label": "negative"},     # majority: positive
        {"id": "t1", "text": "Shares flat after the call", "label": "positive"},
        {"id": "t2", "text": "Shares flat after the call", "label": "negative"},       # tie: dropped
        {"id": "e1", "text": "", "label": "neutral"},
        {"id": "e2", "text": "   ", "label": "neutral"},
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _splits(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in SPLITS}


def _no_shared_texts(splits: dict[str, pd.DataFrame]) -> None:
    keys = {name: set(normalized_key(frame["text"].astype("str"))) for name, frame in splits.items()}
    assert not keys["train"] & keys["validation"]
    assert not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]


def _prep(cli, *args):
    result = cli("prep", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_messy_csv_end_to_end(cli, tmp_path):
    src = _messy_csv(tmp_path / "news.csv")
    card = _prep(cli, src, "--out", tmp_path / "out", "--keep-column", "id")
    assert card["rows_in"] == 210
    assert card["dropped"] == {"empty_text": 2, "conflict": 3, "duplicate_exact": 3,
                               "duplicate_normalized": 1}
    assert card["rows_out"] == card["rows_in"] - sum(card["dropped"].values()) == 201
    assert card["conflicts"]["groups"] == 2 and card["conflicts"]["resolved"] == 1
    kept = {ex["text"]: ex["kept"] for ex in card["conflicts"]["examples"]}
    assert kept == {"Guidance unchanged for 2026": "positive", "Shares flat after the call": None}
    assert {ex["removed"]["line"] for ex in card["duplicates"]["examples"]} >= {202, 203, 204}

    splits = _splits(tmp_path / "out")
    assert sum(len(f) for f in splits.values()) == card["rows_out"]
    _no_shared_texts(splits)
    every = pd.concat(splits.values())
    assert list(every.columns) == ["text", "label", "id"]
    assert every["text"].is_unique and set(every["label"]) == set(LABELS)
    assert every.loc[every["text"].str.startswith("Guidance"), "label"].tolist() == ["positive"]
    assert not every["text"].str.startswith("Shares flat").any()
    assert "Company negative 1 reports quarter 7" in set(every["text"])  # whitespace collapsed
    # largest remainder: every label's count in a split is within one row of its exact share
    totals = every["label"].value_counts()
    for name, frac in (("validation", 0.1), ("test", 0.1), ("train", 0.8)):
        counts = splits[name]["label"].value_counts()
        for label in LABELS:
            assert abs(counts.get(label, 0) - totals[label] * frac) < 1, (name, label)
        assert card["splits"][name]["rows"] == len(splits[name])
        assert card["label_counts"][name] == {lb: int(counts.get(lb, 0)) for lb in LABELS}
    assert card["labels"] == list(LABELS) and card["seed"] == 42
    assert card["inputs"][0]["sha256"] and card["inputs"][0]["rows"] == 210
    assert json.loads((tmp_path / "out" / "data_card.json").read_text()) == card


def test_conflict_rule_drop_and_human_table(cli, tmp_path):
    src = _messy_csv(tmp_path / "news.csv")
    card = _prep(cli, src, "--out", tmp_path / "drop", "--conflict-rule", "drop")
    assert card["dropped"]["conflict"] == 5 and card["conflicts"]["resolved"] == 0
    assert card["dropped"]["duplicate_exact"] == 2  # c2 went with its conflict group
    result = cli("prep", src, "--out", tmp_path / "human")
    assert result.exit_code == 0
    assert "validation" in result.stdout and "duplicate exact 3" in result.stdout
    assert "conflicting labels" in result.stdout


def test_seed_repeats_and_changes_the_split(cli, tmp_path):
    src = _messy_csv(tmp_path / "news.csv")
    a = _prep(cli, src, "--out", tmp_path / "a", "--seed", "1")
    b = _prep(cli, src, "--out", tmp_path / "b", "--seed", "1")
    c = _prep(cli, src, "--out", tmp_path / "c", "--seed", "2")
    assert a["splits"]["test"]["sha256"] == b["splits"]["test"]["sha256"]
    assert set(_splits(tmp_path / "a")["test"]["text"]) != set(_splits(tmp_path / "c")["test"]["text"])
    assert c["splits"]["test"]["labels"] == a["splits"]["test"]["labels"]


def test_default_out_is_under_workdir(cli, tmp_path):
    src = _messy_csv(tmp_path / "news.csv")
    result = cli("--set", "workdir=w", "prep", src, "--json")
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    assert Path(card["out"]) == (Path("w") / "data" / "news").resolve()
    assert sorted(os.listdir("w/data/news")) == ["data_card.json", "test.parquet", "train.parquet",
                                                  "validation.parquet"]


def test_several_inputs_are_deduplicated_together(cli, tmp_path):
    pd.DataFrame({"id": ["a", "b", "c"], "text": ["Up big", "Down big", "Flat"],
                  "label": ["pos", "neg", "neu"]}).to_csv(tmp_path / "one.csv", index=False)
    pd.DataFrame({"id": [1, 2], "sentence": ["UP BIG!", "Other news"],
                  "sentiment": [1, 0]}).to_parquet(tmp_path / "two.parquet")
    card = _prep(cli, tmp_path / "one.csv", tmp_path / "two.parquet", "--keep-column", "id",
                 "--out", tmp_path / "o", "--val-size", "0", "--test-size", "0")
    assert [i["rows"] for i in card["inputs"]] == [3, 2] and card["rows_out"] == 4
    example = card["duplicates"]["examples"][0]
    assert (example["removed"]["input"], example["kept"]["input"]) == (1, 0)
    train = pd.read_parquet(tmp_path / "o" / "train.parquet")
    assert train["id"].tolist() == ["a", "b", "c", "2"]  # int and str ids kept as text


def test_integer_labels_need_a_label_map(cli, tmp_path):
    codes = {"negative": 0, "positive": 1, "neutral": 2}
    rows = [dict(r, label=codes[r["label"]]) for r in _base_rows()]
    pd.DataFrame(rows).to_csv(tmp_path / "codes.csv", index=False)

    refused = cli("prep", tmp_path / "codes.csv", "--out", tmp_path / "o")
    assert refused.exit_code == 1 and "'2' (70 rows)" in refused.stderr and "'0'" in refused.stderr
    assert not (tmp_path / "o").exists()

    card = _prep(cli, tmp_path / "codes.csv", "--out", tmp_path / "o", "--label-map", "0=negative",
                 "--label-map", "1=positive", "--label-map", "2=neutral")
    assert card["label_counts"]["all"] == COUNTS
    assert card["inputs"][0]["label_values"]["2"] == {"label": "neutral", "rows": 70}


def test_zero_size_split_is_written_empty(cli, tmp_path):
    src = _messy_csv(tmp_path / "news.csv")
    card = _prep(cli, src, "--out", tmp_path / "o", "--val-size", "0", "--test-size", "0.25")
    validation = pd.read_parquet(tmp_path / "o" / "validation.parquet")
    assert len(validation) == 0 and list(validation.columns) == ["text", "label"]
    assert card["splits"]["test"]["rows"] == len(pd.read_parquet(tmp_path / "o" / "test.parquet"))
    bad = cli("prep", src, "--out", tmp_path / "p", "--val-size", "0.5", "--test-size", "0.5")
    assert bad.exit_code == 1 and "val_size + data.test_size" in bad.stderr


def test_split_from_files_removes_train_copies_of_test_texts(cli, tmp_path):
    rows = _base_rows()
    pd.DataFrame(rows[::2]).to_csv(tmp_path / "train.csv", index=False)
    test_rows = rows[1::4] + [dict(rows[0], text=rows[0]["text"].upper() + " .")]  # leaks from train
    pd.DataFrame(test_rows).to_json(tmp_path / "test.jsonl", orient="records", lines=True)

    card = _prep(cli, "--split-from-files", f"train={tmp_path / 'train.csv'}",
                 "--split-from-files", f"test={tmp_path / 'test.jsonl'}", "--out", tmp_path / "o")
    splits = _splits(tmp_path / "o")
    assert card["split"]["mode"] == "pre-split"
    assert len(splits["test"]) == len(test_rows)  # the evaluation copy is the one kept
    assert len(splits["train"]) + len(splits["validation"]) == len(rows[::2]) - 1
    assert len(splits["validation"]) == pytest.approx(0.1 * (len(rows[::2]) - 1), abs=3)
    _no_shared_texts(splits)
    both = cli("prep", tmp_path / "train.csv", "--split-from-files", f"train={tmp_path / 'train.csv'}")
    assert both.exit_code == 1 and "not both" in both.stderr


def test_hf_dataset_dict_is_pre_split(cli, tmp_path):
    import datasets

    rows = _base_rows()
    frame = pd.DataFrame(rows)[["text", "label"]]
    datasets.DatasetDict(
        train=datasets.Dataset.from_pandas(frame.iloc[::3], preserve_index=False),
        validation=datasets.Dataset.from_pandas(frame.iloc[1::3], preserve_index=False),
        test=datasets.Dataset.from_pandas(frame.iloc[2::3], preserve_index=False),
    ).save_to_disk(tmp_path / "hf")
    card = _prep(cli, tmp_path / "hf", "--out", tmp_path / "o")
    assert card["inputs"][0]["format"] == "hf"
    assert {name: s["rows"] for name, s in card["splits"].items()} == {
        "train": len(frame.iloc[::3]), "validation": len(frame.iloc[1::3]), "test": len(frame.iloc[2::3])}


def test_cleaning_options(cli, tmp_path):
    rows = _base_rows()
    rows[0]["text"] = "<p>Profit &amp; sales up</p> see https://example.com/x ﬁnal"
    pd.DataFrame(rows).to_csv(tmp_path / "c.csv", index=False)
    _prep(cli, tmp_path / "c.csv", "--out", tmp_path / "o", "--remove-html", "--remove-urls")
    texts = set(pd.concat(_splits(tmp_path / "o").values())["text"])
    assert "Profit & sales up see final" in texts  # tags, entity, URL gone; NFKC folds the ligature


def test_token_stats_with_a_local_tokenizer(cli, tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    src = _messy_csv(tmp_path / "news.csv")
    card = _prep(cli, src, "--out", tmp_path / "o", "--tokenizer", tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = pd.concat(_splits(tmp_path / "o").values())["text"].tolist()
    lengths = [len(ids) for ids in tok(texts)["input_ids"]]
    assert card["text_length"]["tokens"]["max"] == max(lengths)
    assert card["text_length"]["over_max_length"]["max_length"] == 64


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list, str]]:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "nocol.csv").write_text("words,label\nhello,pos\n")
    (tmp_path / "unknown.csv").write_text("text,label\na,pos\nb,great\nc,great\n")
    (tmp_path / "broken.jsonl").write_text('{"text": "a", "label": "pos"}\n{"text": "b", "lab\n')
    (tmp_path / "latin.csv").write_bytes("text,label\nSeppälä up,pos\n".encode("latin-1"))
    return {
        "missing": ([tmp_path / "nope.csv"], "not found"),
        "empty": ([tmp_path / "empty.csv"], "is empty"),
        "no text column": ([tmp_path / "nocol.csv"], "the file has columns: words, label"),
        "unknown labels": ([tmp_path / "unknown.csv"], "unknown labels 'great' (2 rows)"),
        "broken jsonl": ([tmp_path / "broken.jsonl"], "line 2 is not valid JSON"),
        "latin-1 as utf-8": ([tmp_path / "latin.csv", "--encoding", "utf-8"], "--encoding latin-1"),
    }


def test_bad_inputs_exit_1_with_one_line_and_no_output(cli, tmp_path):
    for case, (args, expected) in _bad_inputs(tmp_path).items():
        result = cli("prep", *args, "--out", tmp_path / "out")
        assert result.exit_code == 1, case
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (case, result.stderr)
        assert args[0].name in lines[0], case
        assert not (tmp_path / "out").exists() and not Path("finsight-work").exists(), case
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_write_keeps_the_old_splits(cli, tmp_path, monkeypatch):
    import finsight.io

    src = _messy_csv(tmp_path / "news.csv")
    _prep(cli, src, "--out", tmp_path / "o", "--seed", "1")
    before = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}

    def fail(*args, **kwargs):  # the card is written last, after every split file
        raise OSError("disk full")

    monkeypatch.setattr(finsight.io, "atomic_write_json", fail)
    with pytest.raises(OSError):
        cli("prep", src, "--out", tmp_path / "o", "--seed", "2")
    with pytest.raises(OSError):
        cli("prep", src, "--out", tmp_path / "fresh")
    assert {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()} == before
    assert not (tmp_path / "fresh").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _check_phrasebank(cli, path: Path, out: Path, unique: int) -> dict:
    card = _prep(cli, path, "--out", out)
    splits = _splits(out)
    assert card["rows_out"] == unique == sum(len(f) for f in splits.values())
    _no_shared_texts(splits)
    source = card["label_counts"]["all"]
    for name, frame in splits.items():
        share = frame["label"].value_counts(normalize=True)
        for label in LABELS:
            assert abs(share[label] - source[label] / unique) < 0.01, (name, label)
    return card


@pytest.mark.phrasebank
def test_phrasebank_all_agree(cli, phrasebank, tmp_path):
    card = _check_phrasebank(cli, phrasebank / "Sentences_AllAgree.txt", tmp_path / "all", 2259)
    assert card["rows_in"] == 2264
    assert card["dropped"]["duplicate_exact"] + card["dropped"]["duplicate_normalized"] == 5
    assert card["inputs"][0]["format"] == "phrasebank" and card["inputs"][0]["encoding"] == "latin-1"


@pytest.mark.phrasebank
def test_phrasebank_50_agree(cli, phrasebank, tmp_path):
    # 4846 lines: 6 exact and 3 normalised duplicates, and 2 texts labelled both neutral and
    # positive once each (a tie under the majority rule, so both copies are dropped).
    card = _check_phrasebank(cli, phrasebank / "Sentences_50Agree.txt", tmp_path / "50", 4833)
    assert card["rows_in"] == 4846
    assert card["conflicts"]["groups"] == 2 and card["dropped"]["conflict"] == 4
    declared_utf8 = cli("prep", phrasebank / "Sentences_50Agree.txt", "--encoding", "utf-8",
                        "--out", tmp_path / "bad")
    assert declared_utf8.exit_code == 1 and "--encoding latin-1" in declared_utf8.stderr


def test_prep_help_does_not_import_pandas():
    import subprocess
    import sys

    code = ("import sys; from finsight.cli import main\n"
            "try:\n    main(['prep', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('pandas', 'pyarrow', 'datasets', 'torch') if m in sys.modules],"
            " file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in proc.stderr and "--label-map" in proc.stdout, proc.stderr
