"""Rules across tables, run by a case's loader once every table is valid: a fact not before the entity it
belongs to (a usage day before the customer's signup, a label before its ticket), and limits per unit of a
parent's column (session minutes a day per seat). Each refuses with the file, the column and example rows."""

from __future__ import annotations

import polars as pl

from lakehouse.common.plausibility import Bound, Limits
from lakehouse.common.schema import MAX_EXAMPLE_ROWS, ROW_COLUMN, InputDataError


def not_before(
    child: pl.DataFrame,
    child_col: str,
    parent: pl.DataFrame,
    parent_col: str,
    on: str,
    *,
    source: str,
    table: str,
    parent_table: str,
    limits: Limits,
) -> None:
    """Refuse rows of `child` whose `child_col` is before their parent's `parent_col` (joined on `on`; nulls
    pass): a usage day before the customer's signup, a label before its ticket. Dates and datetimes compare
    by day when one side is a date. Nothing is refused when the limits accept such facts."""
    if limits.plausibility.facts_before_entity == "accept":
        return
    parents = parent.select(on, pl.col(parent_col).alias("__parent")).unique(on, keep="first")
    joined = child.with_row_index(ROW_COLUMN).join(parents, on=on, how="inner")
    mine, theirs = pl.col(child_col), pl.col("__parent")
    if isinstance(joined.schema[child_col], pl.Date) != isinstance(joined.schema["__parent"], pl.Date):
        mine, theirs = mine.cast(pl.Date), theirs.cast(pl.Date)
    early = joined.filter(mine < theirs).sort(ROW_COLUMN)
    if early.height:
        raise InputDataError(
            str(source),
            table,
            child_col,
            f"{early.height} row(s) dated before their {parent_table}.{parent_col} (a {table} row cannot come "
            f"before the {parent_table} row it belongs to; a source known to be incoherent is taken as it is with "
            f"{limits.where('facts_before_entity')} set to accept)",
            early.rename({"__parent": f"{parent_table}.{parent_col}"}).head(MAX_EXAMPLE_ROWS),
            [on, child_col, f"{parent_table}.{parent_col}"],
        )


def within_parent_limit(
    child: pl.DataFrame,
    column: str,
    parent: pl.DataFrame,
    on: str,
    bound: Bound,
    *,
    source: str,
    table: str,
    parent_table: str,
    setting: str,
) -> None:
    """Refuse rows of `child` whose `column` exceeds `bound.max` times their parent's `bound.per` (or falls
    below `bound.min` times it): 1,440 session minutes a day per seat."""
    per = f"{parent_table}.{bound.per}"
    parents = parent.select(on, pl.col(bound.per).alias(per)).unique(on, keep="first")
    joined = child.with_row_index(ROW_COLUMN).join(parents, on=on, how="inner")
    for limit, word, broken in (
        (bound.max, "more than", pl.col(column) > bound.max * pl.col(per) if bound.max is not None else None),
        (bound.min, "less than", pl.col(column) < bound.min * pl.col(per) if bound.min is not None else None),
    ):
        if broken is None:
            continue
        bad = joined.filter(broken.fill_null(False)).sort(ROW_COLUMN)
        if bad.height:
            raise InputDataError(
                str(source),
                table,
                column,
                f"{bad.height} value(s) {word} {limit:g} per unit of {per}: not physically possible; if the rows are "
                f"right ({per} out of date?), correct {per} or set {setting}",
                bad.head(MAX_EXAMPLE_ROWS),
                [on, column, per],
            )
