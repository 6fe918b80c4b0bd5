"""Safe loads into partitioned tables: a load stores every row it was given, or nothing.

Rows of a user's file are put into the run's selected partitions. Before anything is
written:

* rows whose partition is outside the data calendar are refused (they could never be
  stored), with the range and the setting that moves it;
* rows of partitions the run did not select are refused, unless the table's mapping says
  `rows_outside_selection: skip` (a file that keeps growing, loaded a day at a time): then
  they are counted and reported, not silently dropped;
* a selected partition with no row in the file is refused, unless the run asks to replace
  it with an empty one: a stored partition is never emptied by mistake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from lakehouse.common.schema import InputDataError

PARTITION = "__partition"


@dataclass
class PartitionedLoad:
    frames: dict[str, pl.DataFrame]  # selected partition -> its rows
    skipped_rows: int = 0
    skipped_partitions: list[str] = field(default_factory=list)


def split_partitions(
    frame: pl.DataFrame,
    partition_of: pl.Expr,
    *,
    selected: Sequence[str],
    allowed: Sequence[str],
    label: str,
    table: str,
    column: str,
    calendar_hint: str,
    rows_outside_selection: str = "refuse",
    replace_with_empty: bool = False,
) -> PartitionedLoad:
    """Split `frame` by `partition_of` (an expression giving each row's partition key) into the selected
    partitions, refusing what the module docstring lists."""
    keyed = frame.with_row_index("row").with_columns(partition_of.alias(PARTITION))
    allowed_set, selected_set = set(allowed), set(selected)
    outside = keyed.filter(~pl.col(PARTITION).is_in(list(allowed_set)))
    if outside.height:
        span = f"{min(allowed)} .. {max(allowed)}" if allowed else "none"
        raise InputDataError(
            label,
            table,
            column,
            f"{outside.height} row(s) fall outside the data calendar (partitions {span}; {_keys(outside)}). "
            f"Move the first partition with {calendar_hint}; data dated in the future cannot be loaded",
            outside.drop(PARTITION),
        )
    others = keyed.filter(~pl.col(PARTITION).is_in(list(selected_set)))
    if others.height and rows_outside_selection != "skip":
        raise InputDataError(
            label,
            table,
            column,
            f"{others.height} row(s) belong to partitions this run did not select ({_keys(others)}; selected "
            f"{_span(selected)}). Select their partitions too (a backfill over the file's range), or set "
            f"`rows_outside_selection: skip` on the table's mapping to load a growing file part by part",
            others.drop(PARTITION),
        )
    frames = {
        key: part.drop("row", PARTITION)
        for (key,), part in keyed.filter(pl.col(PARTITION).is_in(list(selected_set))).group_by(PARTITION)
    }
    empty = [key for key in selected if key not in frames]
    if empty and not replace_with_empty:
        raise InputDataError(
            label,
            table,
            column,
            f"no row for selected partition(s) {', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}: the stored "
            "partitions are kept. Run with `replace_with_empty: true` to store them empty on purpose",
        )
    frames.update({key: frame.head(0) for key in empty})
    return PartitionedLoad(frames, others.height, sorted(others[PARTITION].unique().to_list()))


def _span(keys: Sequence[str]) -> str:
    ordered = sorted(keys)
    return ordered[0] if len(ordered) == 1 else f"{ordered[0]} .. {ordered[-1]} ({len(ordered)})"


def _keys(rows: pl.DataFrame) -> str:
    counts = rows.group_by(PARTITION).len().sort(PARTITION)
    shown = ", ".join(f"{k}: {n}" for k, n in counts.head(5).iter_rows())
    return f"{counts.height} partition(s): {shown}{', ...' if counts.height > 5 else ''}"
