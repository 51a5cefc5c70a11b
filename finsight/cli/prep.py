"""`finsight prep`: raw labeled text -> train/validation/test Parquet + data_card.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Literal, Optional

import typer
from rich.table import Table

from finsight.cli._app import app, out, print_json, setting, settings

Format = Literal["auto", "csv", "tsv", "jsonl", "json", "parquet", "phrasebank", "hf"]


@app.command("prep")
def prep(
    ctx: typer.Context,
    inputs: Optional[List[str]] = typer.Argument(
        None, metavar="INPUT",
        help="Labeled files, saved HF dataset dirs or hub names; optional with --split-from-files."),
    out_dir: Optional[Path] = setting("data.out", "--out", "-o", file_okay=False),
    fmt: Optional[Format] = setting("data.format", "--format"),
    text_column: Optional[str] = setting("data.text_column", "--text-column"),
    label_column: Optional[str] = setting("data.label_column", "--label-column"),
    label_map: Optional[List[str]] = setting(
        "data.label_map", "--label-map", metavar="SRC=DST", note="repeatable"),
    keep_columns: Optional[List[str]] = setting(
        "data.keep_columns", "--keep-column", metavar="COL", note="repeatable"),
    encoding: Optional[str] = setting("data.encoding", "--encoding"),
    val_size: Optional[float] = setting("data.val_size", "--val-size"),
    test_size: Optional[float] = setting("data.test_size", "--test-size"),
    seed: Optional[int] = setting("data.seed", "--seed"),
    split_from_files: Optional[List[str]] = setting(
        "data.split_from_files", "--split-from-files", metavar="SPLIT=FILE", note="repeatable"),
    conflict_rule: Optional[Literal["majority", "drop"]] = setting("data.conflict_rule", "--conflict-rule"),
    remove_urls: Optional[bool] = setting(
        "data.remove_urls", "--remove-urls/--keep-urls", show_default=False),
    remove_html: Optional[bool] = setting(
        "data.remove_html", "--remove-html/--keep-html", show_default=False),
    tokenizer: Optional[str] = setting("data.tokenizer", "--tokenizer"),
    as_json: bool = typer.Option(False, "--json", help="Print the data card as JSON."),
) -> None:
    """Clean, deduplicate and split labeled text into leakage-free Parquet splits."""
    from finsight.data.prep import prepare

    flags = {
        "data.out": out_dir, "data.format": fmt, "data.text_column": text_column,
        "data.label_column": label_column, "data.label_map": _pairs(label_map, "--label-map"),
        "data.keep_columns": keep_columns or None, "data.encoding": encoding,
        "data.val_size": val_size, "data.test_size": test_size, "data.seed": seed,
        "data.split_from_files": _pairs(split_from_files, "--split-from-files"),
        "data.conflict_rule": conflict_rule, "data.remove_urls": remove_urls,
        "data.remove_html": remove_html, "data.tokenizer": tokenizer,
    }
    resolved = settings(ctx, flags)
    card = prepare(inputs or [], resolved.data, workdir=resolved.workdir,
                   max_length=resolved.model.max_length).as_dict()
    if as_json:
        print_json(card)
    else:
        _render(card)


def _pairs(values: Optional[List[str]], flag: str) -> Optional[dict[str, str]]:
    if not values:
        return None
    pairs = {}
    for item in values:
        key, sep, value = item.rpartition("=")
        if not sep or not key.strip() or not value.strip():
            raise typer.BadParameter(f"'{item}' is not KEY=VALUE", param_hint=flag)
        pairs[key.strip()] = value.strip()
    return pairs


def _render(card: dict[str, Any]) -> None:
    for item in card["inputs"]:
        split = f" as {item['split']}" if item["split"] else ""
        out.print(f"[bold]{item['path']}[/] ({item['format']}{split}): {item['rows']} rows")
    dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in card["dropped"].items() if v) or "none"
    out.print(f"{card['rows_in']} rows in, [bold]{card['rows_out']}[/] out; dropped: {dropped}")
    conflicts = card["conflicts"]
    if conflicts["groups"]:
        out.print(f"[yellow]{conflicts['groups']} texts had conflicting labels[/] (rule "
                  f"{conflicts['rule']}: {conflicts['resolved']} resolved, "
                  f"{conflicts['dropped_groups']} dropped); see conflicts in the data card")
    out.print(_split_table(card))
    chars = card["text_length"]["chars"]
    line = f"text length: chars p50 {chars['p50']:g}, p95 {chars['p95']:g}, max {chars['max']}"
    tokens = card["text_length"]["tokens"]
    if tokens:
        line += f"; tokens p50 {tokens['p50']:g}, p95 {tokens['p95']:g}, max {tokens['max']}"
        over = card["text_length"].get("over_max_length")
        if over:
            line += f" ({over['rows']} over max_length {over['max_length']})"
    out.print(line)
    out.print(f"wrote {card['out']}/{{train,validation,test}}.parquet and data_card.json")


def _split_table(card: dict[str, Any]) -> Table:
    table = Table(title="splits")
    table.add_column("split")
    table.add_column("rows", justify="right")
    for label in card["labels"]:
        table.add_column(label, justify="right")
    rows = [("all", card["rows_out"], card["label_counts"]["all"])]
    rows += [(name, s["rows"], s["labels"]) for name, s in card["splits"].items()]
    for name, total, counts in rows:
        cells = [f"{counts[label]} ({100 * counts[label] / max(total, 1):.1f}%)" for label in card["labels"]]
        table.add_row(name, str(total), *cells)
    return table
