"""Readers (every format, detection, clear errors) and atomic writers."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from finsight.errors import DataError
from finsight.io import (LINE, _umask, TableWriter, atomic_dir, atomic_path, detect_format, iter_chunks,
                         list_columns, read_table, resolve_column)

ROWS = [{"id": "a1", "text": "Profit rose 5% @ Nokia", "label": "positive"},
        {"id": "a2", "text": "Sales fell, sharply", "label": "negative"},
        {"id": "a3", "text": "Café chain reports results", "label": "neutral"}]


def _write(path, fmt):
    frame = pd.DataFrame(ROWS)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(ROWS), encoding="utf-8")
    elif fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "phrasebank":  # latin-1, CRLF, '@' inside the sentence
        path.write_bytes("".join(f"{r['text']}@{r['label']}\r\n" for r in ROWS).encode("latin-1"))
    return path


@pytest.mark.parametrize("fmt, name", [("csv", "d.csv"), ("tsv", "d.tsv"), ("jsonl", "d.jsonl"),
                                       ("json", "d.json"), ("parquet", "d.parquet"),
                                       ("phrasebank", "d.txt")])
def test_every_format_reads_the_same_rows(tmp_path, fmt, name):
    path = _write(tmp_path / name, fmt)
    assert detect_format(path) == fmt
    frame = read_table(path)
    assert frame["text"].tolist() == [r["text"] for r in ROWS]
    assert frame["label"].tolist() == [r["label"] for r in ROWS]
    assert frame[LINE].tolist() == ([2, 3, 4] if fmt in ("csv", "tsv") else [1, 2, 3])


@pytest.mark.parametrize("fmt, expected", [("csv", "csv"), ("tsv", "tsv"), ("jsonl", "jsonl"),
                                           ("json", "json"), ("phrasebank", "phrasebank")])
def test_detection_by_content_without_a_suffix(tmp_path, fmt, expected):
    assert detect_format(_write(tmp_path / "data", fmt)) == expected


def test_csv_with_at_signs_is_not_phrasebank(tmp_path):
    path = tmp_path / "mail.txt"
    path.write_text("text,label\nmail a@b.com,positive\nping c@d.org,neutral\n")
    assert detect_format(path) == "csv"


def test_chunks_keep_line_numbers(tmp_path):
    path = _write(tmp_path / "d.jsonl", "jsonl")
    chunks = list(iter_chunks(path, chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 1]
    assert chunks[1][LINE].tolist() == [3]


def test_utf8_bom_is_not_part_of_the_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nhello,pos\n")
    assert list_columns(path) == ["text", "label"]


def test_hf_saved_dataset_and_dataset_dict(tmp_path):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "neutral", "positive"])})
    ds = datasets.Dataset.from_dict({"text": ["up", "down", "flat"], "label": [2, 0, 1]}, features=features)
    ds.save_to_disk(tmp_path / "one")
    datasets.DatasetDict(train=ds, test=ds.select([0])).save_to_disk(tmp_path / "dict")

    one = read_table(tmp_path / "one")
    assert detect_format(tmp_path / "one") == "hf"
    assert one["label"].tolist() == ["positive", "negative", "neutral"]  # ClassLabel names, not codes
    both = read_table(tmp_path / "dict")
    assert both["split"].tolist() == ["train"] * 3 + ["test"]
    assert both[LINE].tolist() == [1, 2, 3, 4]


def test_hub_name_offline_is_a_clear_error():
    with pytest.raises(DataError, match="Hugging Face Hub is unreachable"):
        read_table("nobody-here/no-such-dataset")


def test_missing_file_with_a_suffix_is_not_taken_for_a_hub_name(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_table("data/train.csv")
    with pytest.raises(DataError, match="not found"):
        read_table(tmp_path / "x.csv", format="csv")


def test_empty_and_header_only_files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "head.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="no data rows"):
        read_table(tmp_path / "head.csv")


def test_broken_jsonl_line_is_named(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"text": "a", "label": "pos"}\n\n{"text": "b", "label":\n')
    with pytest.raises(DataError, match="line 3 is not valid JSON"):
        read_table(path)


def test_latin1_read_as_utf8_names_file_line_and_fix(tmp_path):
    path = tmp_path / "l1.csv"
    path.write_bytes("text,label\nok,pos\nSeppälä fell,neg\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        read_table(path)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "0xe4" in message
    assert "latin-1" in message and "--encoding latin-1" in message
    assert read_table(path, encoding="latin-1")["text"].tolist() == ["ok", "Seppälä fell"]


def test_phrasebank_declared_utf8_fails_clearly(tmp_path):
    path = _write(tmp_path / "pb.txt", "phrasebank")
    with pytest.raises(DataError, match="not valid utf-8.*--encoding latin-1"):
        read_table(path, encoding="utf-8")


def test_unknown_encoding(tmp_path):
    with pytest.raises(DataError, match="unknown text encoding 'latin-9x'"):
        read_table(_write(tmp_path / "d.csv", "csv"), encoding="latin-9x")


def test_resolve_column_lists_available_and_suggests(tmp_path):
    cols = ["id", "headline_text", "sentiment"]
    found = resolve_column(cols, None, ("label", "sentiment"), path="f", role="label", flag="--x")
    assert found == "sentiment"
    with pytest.raises(DataError, match="columns: id, headline_text, sentiment; pass --text-column"):
        resolve_column(cols, None, ("text", "sentence"), path="f", role="text", flag="--text-column")
    with pytest.raises(DataError, match="did you mean 'headline_text'"):
        resolve_column(cols, "headline_txt", (), path="f", role="text", flag="--text-column")


def test_atomic_path_and_dir_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "f.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert os.listdir(tmp_path / "out") == []
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError
    assert sorted(os.listdir(tmp_path)) == ["out"]
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "a.txt").write_text("whole")
    assert (tmp_path / "d" / "a.txt").read_text() == "whole"
    # not the owner-only mode of a temp dir: what mkdir would give under the umask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_table_writer_appends_and_discards_on_error(tmp_path):
    with TableWriter(tmp_path / "s.parquet") as writer:
        writer.write(pd.DataFrame(ROWS[:2]))
        writer.write(pd.DataFrame(ROWS[2:]))
    assert pd.read_parquet(tmp_path / "s.parquet")["id"].tolist() == ["a1", "a2", "a3"]
    with pytest.raises(RuntimeError):
        with TableWriter(tmp_path / "t.jsonl") as writer:
            writer.write(pd.DataFrame(ROWS))
            raise RuntimeError
    assert sorted(os.listdir(tmp_path)) == ["s.parquet"]


def test_utf8_read_as_ascii_suggests_utf8_and_jsonl_in_json_is_named(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("text,label\nSeppälä up,pos\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2 .* it is valid UTF-8: pass --encoding utf-8"):
        read_table(path, encoding="ascii")
    lines = tmp_path / "rows.json"
    lines.write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}\n')
    with pytest.raises(DataError, match="pass --format jsonl"):
        read_table(lines)
