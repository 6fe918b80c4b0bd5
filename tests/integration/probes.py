"""Bad-input probes shared by the bring-your-own-data tests: ids the eye does not see, values no business has,
dates no data has, and the lake digest that proves a refusal changed nothing."""

import hashlib
from pathlib import Path

import polars as pl


def fullwidth(text: str) -> str:
    """The full-width form of printable ASCII (`C1` -> `Ｃ１`): equal to `text` under NFKC."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# How each probe spoils the id of row 0 (the full-width twin copies row 1's id in full-width letters).
ID_PROBES = {
    "zero-width space": lambda ids: ids[0] + "\u200b",
    "right-to-left override": lambda ids: "\u202e" + ids[0],
    "C1 control": lambda ids: ids[0] + "\u009b",
    "Hangul filler": lambda ids: ids[0] + "\u3164",
    "full-width twin": lambda ids: fullwidth(ids[1]),
    "equals sign": lambda ids: "a=b",
    "a lone dot": lambda ids: ".",
    "300 characters": lambda ids: "x" * 300,
}


def set_value(frame: pl.DataFrame, column: str, value, row: int = 0) -> pl.DataFrame:
    """`frame` with `column` of `row` set to `value` (cast to the column's type)."""
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.lit(value).cast(frame.schema[column]))
        .otherwise(pl.col(column))
        .alias(column)
    )


def spoil_id(frame: pl.DataFrame, column: str, probe: str) -> pl.DataFrame:
    ids = frame[column].unique(maintain_order=True).to_list()
    return frame.with_columns(pl.col(column).replace(ids[0], ID_PROBES[probe](ids)))


def lake_digest(home: Path) -> dict[str, str]:
    """Every file of the lake and its hash: equal before and after a refused load."""
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((home / "lake").rglob("*"))
        if p.is_file()
    }


def assert_names_file_column_rows(message: str, file: str, column: str) -> None:
    assert file in message, message
    assert f"column '{column}" in message, message
    assert "row" in message, message
    assert len(message) < 2_000, message
