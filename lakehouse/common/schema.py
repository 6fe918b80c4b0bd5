"""Declared schemas for user-supplied raw tables, and their validation.

Users bring their own data (Parquet or CSV) instead of the synthetic generators.
Every raw table has a :class:`TableSchema`; :func:`load_tables` reads and
validates all tables of a directory and returns them only if *every* table is
valid, so nothing reaches the lake when any file is bad.

Any problem raises one :class:`InputDataError` whose message names the file,
the table, the column and up to five example offending rows, e.g.::

    data/usage.csv: table 'usage', column 'session_minutes': 1 value(s) below
    the minimum 0; e.g. rows: row 3: customer_id='C3', session_minutes=-5.0
    (row numbers are 0-based data rows, header excluded)

Checks run in a fixed order, one small function each, and the first failing
check is reported: empty table, missing columns, extra columns, types (strict
cast to the declared dtype, lakehouse.common.conversion), non-finite or huge
numbers, nulls in non-nullable columns, null keys, ids (the one id rule of
lakehouse.common.ids; ids are stored in NFC), duplicate keys, allowed values,
the schema's min/max bounds, the case's plausibility limits (amounts, dates,
per-column bounds: lakehouse.common.plausibility), dates in the future,
cross-column rules (e.g. a closing date before its opening date).

Errors echo little: at most a few dozen characters of any value, and header
cells that do not look like column names (a file that is no table) are counted,
not shown.

Conversion rules of the type check (values are never silently changed, except
that ids are put in Unicode NFC, NaN in a float column is treated as null and surrounding whitespace is
ignored when text is parsed into a non-text type):

* text (CSV, or a string column in Parquet) is parsed into the declared type:
  integers/floats as numbers, booleans from true/false/t/f/yes/no/1/0
  (case-insensitive), dates as ISO ``YYYY-MM-DD``, datetimes as ISO
  ``YYYY-MM-DD[ T]HH:MM[:SS[.fff]][Z|+HH:MM]`` or a bare date (midnight);
  an empty field is null;
* integers widen to floats; floats become integers only when integral;
  integers (not floats) are accepted for text columns (e.g. numeric ids);
* datetimes become dates only when at midnight; dates become datetimes at
  midnight; a datetime with an offset/time zone is converted to the declared
  zone (UTC when the declared datetime is naive);
* any other combination (e.g. boolean where a number is declared) is an error.

This module is pure Python/Polars, with no orchestration (Dagster) imports.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from lakehouse.common.conversion import (
    ACCEPTS,
    ROW_COLUMN,
    cast_column,
    examples,
    instance,
    render_value,
    type_name,
)
from lakehouse.common.conversion import (
    kind as kind_of,
)
from lakehouse.common.ids import ID_RULE, column_refusal, normalised_column
from lakehouse.common.plausibility import DEFAULT_LIMITS, Bound, Limits

__all__ = [
    "DATA_SUFFIXES",
    "ROW_COLUMN",
    "Column",
    "InputDataError",
    "RowRule",
    "TableSchema",
    "check_limits",
    "find_table_file",
    "load_tables",
    "read_table",
    "validate_frame",
    "validate_references",
]

#: How many example rows an error carries and shows.
MAX_EXAMPLE_ROWS = 5

DATA_SUFFIXES = (".parquet", ".csv")
#: No quantity this platform handles comes near this; larger values are input errors (1e308, overflows).
MAX_MAGNITUDE = 1e15


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Column:
    """One declared column of a raw table."""

    name: str
    dtype: type[pl.DataType] | pl.DataType
    description: str
    nullable: bool = False
    min_value: float | None = None
    max_value: float | None = None
    allowed: tuple[str, ...] | None = None
    not_in_future: bool = False
    identifier: bool = False  # an id: the id rule of lakehouse.common.ids
    quantity: bool = False  # an amount or a count of units: below the case's `plausibility.max_amount`
    before_data: bool = False  # a date that may lie long before the data (a signup, an opening): the floor only
    limit: Bound | None = None  # its physical limits (plausibility `columns` replaces them)

    def __post_init__(self) -> None:
        dtype = instance(self.dtype)
        kind = kind_of(dtype)
        if kind not in ACCEPTS or isinstance(dtype, pl.Categorical | pl.Enum):
            raise ValueError(
                f"column {self.name!r}: unsupported dtype {dtype}; use String, an integer, "
                "a float, Boolean, Date or Datetime"
            )
        if (self.min_value is not None or self.max_value is not None) and kind not in ("int", "float"):
            raise ValueError(f"column {self.name!r}: min_value/max_value need a numeric dtype")
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError(f"column {self.name!r}: min_value > max_value")
        if self.allowed is not None:
            if kind != "string":
                raise ValueError(f"column {self.name!r}: allowed values need a String dtype")
            if isinstance(self.allowed, str) or not self.allowed:
                raise ValueError(f"column {self.name!r}: allowed must be a non-empty tuple of strings")
        if self.not_in_future and kind not in ("date", "datetime"):
            raise ValueError(f"column {self.name!r}: not_in_future needs a Date or Datetime dtype")
        if self.identifier and kind != "string":
            raise ValueError(f"column {self.name!r}: identifier needs a String dtype")
        if self.quantity and kind not in ("int", "float"):
            raise ValueError(f"column {self.name!r}: quantity needs a numeric dtype")
        if self.before_data and kind not in ("date", "datetime"):
            raise ValueError(f"column {self.name!r}: before_data needs a Date or Datetime dtype")

    @property
    def polars_dtype(self) -> pl.DataType:
        return instance(self.dtype)

    def rule(self) -> str:
        """Human-readable summary of the value rules (for docs)."""
        rules = []
        if self.min_value is not None:
            rules.append(f">= {_num(self.min_value)}")
        if self.max_value is not None:
            rules.append(f"<= {_num(self.max_value)}")
        if self.allowed is not None:
            rules.append("one of " + ", ".join(f"`{a}`" for a in self.allowed))
        if self.not_in_future:
            rules.append("not in the future")
        if self.quantity:
            rules.append("below `plausibility.max_amount`")
        if self.limit is not None:
            per = f" per `{self.limit.per}`" if self.limit.per else ""
            bounds = [f"{op} {_num(v)}" for op, v in ((">=", self.limit.min), ("<=", self.limit.max)) if v is not None]
            rules.append(f"plausible: {' and '.join(bounds)}{per}")
        if self.identifier:
            rules.append("an id")
        return "; ".join(rules)


@dataclass(frozen=True)
class RowRule:
    """A rule across columns that every row must keep (null operands pass)."""

    description: str  # e.g. "closed_at is not before opened_at"
    valid: pl.Expr
    columns: tuple[str, ...]


@dataclass(frozen=True)
class TableSchema:
    """Declared schema of a raw table; ``key`` columns are unique and non-null."""

    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    rules: tuple[RowRule, ...] = ()
    limits: Limits = dataclasses.field(default=DEFAULT_LIMITS, compare=False)  # the case's plausibility

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if not names:
            raise ValueError(f"table {self.name!r}: no columns declared")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"table {self.name!r}: duplicated column names {duplicated}")
        if isinstance(self.key, str):
            raise ValueError(f"table {self.name!r}: key must be a tuple of column names")
        unknown = [k for k in self.key if k not in names]
        if unknown:
            raise ValueError(f"table {self.name!r}: key columns {unknown} are not declared")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def polars_schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.polars_dtype for c in self.columns}

    def identifiers(self) -> list[Column]:
        """String key columns and columns declared as identifiers."""
        return [c for c in self.columns if c.identifier or (c.name in self.key and kind_of(c.polars_dtype) == "string")]

    def restricted(self, names) -> TableSchema:
        """The schema without the columns not in `names` (optional columns a file lacks)."""
        keep = tuple(c for c in self.columns if c.name in set(names))
        rules = tuple(r for r in self.rules if set(r.columns) <= {c.name for c in keep})
        return TableSchema(self.name, self.description, keep, self.key, rules, self.limits)

    def with_limits(self, limits: Limits) -> TableSchema:
        """The schema measured against a case's plausibility limits (its settings' `plausibility`)."""
        return dataclasses.replace(self, limits=limits)

    def markdown(self) -> str:
        """A Markdown table documenting the columns (for docs)."""
        lines = [
            "| column | type | nullable | rule | description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for col in self.columns:
            rule = col.rule()
            if col.name in self.key:
                rule = "key (unique)" + (f"; {rule}" if rule else "")
            nullable = "yes" if col.nullable and col.name not in self.key else "no"
            cells = [f"`{col.name}`", type_name(col.polars_dtype), nullable, rule, col.description]
            lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
        if self.rules:
            lines += ["", "Rules across columns: " + "; ".join(r.description for r in self.rules) + "."]
        return "\n".join(lines) + "\n"

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.polars_schema())


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------- error


class InputDataError(ValueError):
    """A user-supplied file does not match its declared schema.

    Attributes: ``file``, ``table``, ``column`` (or None for table-level
    problems), ``rows`` (up to 5 example offending rows with a 0-based
    ``row`` column, or None) and ``reason``.
    """

    def __init__(
        self,
        file: str,
        table: str,
        column: str | None,
        reason: str,
        rows: pl.DataFrame | None = None,
        show_columns: Sequence[str] | None = None,
    ) -> None:
        self.file = str(file)
        self.table = table
        self.column = column
        self.reason = reason
        self.rows = rows.head(MAX_EXAMPLE_ROWS) if rows is not None else None
        self.show_columns = tuple(show_columns) if show_columns is not None else None
        super().__init__(self._message())

    def __reduce__(self):  # keep the attributes when pickled (e.g. across processes)
        return (
            self.__class__,
            (self.file, self.table, self.column, self.reason, self.rows, self.show_columns),
        )

    def _message(self) -> str:
        where = f"{self.file}: table '{self.table}'"
        if self.column is not None:
            where += f", column '{self.column}'"
        message = f"{where}: {self.reason}"
        if self.rows is not None and self.rows.height:
            message += "; e.g. rows: " + _render_rows(self.rows, self.show_columns)
            message += " (row numbers are 0-based data rows, header excluded)"
        return message


def _render_rows(rows: pl.DataFrame, show_columns: Sequence[str] | None, max_columns: int = 8) -> str:
    columns = [c for c in (show_columns or rows.columns) if c in rows.columns and c != ROW_COLUMN]
    hidden = len(columns) > max_columns
    columns = columns[:max_columns]
    rendered = []
    for record in rows.iter_rows(named=True):
        fields = ", ".join(f"{c}={render_value(record[c])}" for c in columns)
        if hidden:
            fields += ", …"
        prefix = f"row {record[ROW_COLUMN]}" if ROW_COLUMN in record else "row ?"
        rendered.append(f"{prefix}: {fields}")
    return " | ".join(rendered)


# --------------------------------------------------------------------------- validation


class _Context:
    """Shared state of one validate_frame call: where the rows come from, the schema, today."""

    def __init__(self, source: str, schema: TableSchema, today: date) -> None:
        self.source = source
        self.schema = schema
        self.today = today

    def fail(
        self,
        column: str | None,
        reason: str,
        frame: pl.DataFrame | None = None,
        mask: pl.Expr | None = None,
        shown: Sequence[str] = (),
    ) -> InputDataError:
        rows = None
        show = None
        if frame is not None and mask is not None:
            rows = frame.filter(mask).head(MAX_EXAMPLE_ROWS)
            key = [k for k in self.schema.key if k in frame.columns]
            extra = shown or ([column] if column is not None else [])
            show = [*key, *(c for c in extra if c not in key)]
        return InputDataError(self.source, self.schema.name, column, reason, rows, show)

    def refuse_where(self, typed: pl.DataFrame, column: str, mask: pl.Expr, reason: str, shown=()) -> None:
        """Raise for the rows where `mask` holds (nulls do not count), `reason` prefixed by their count."""
        mask = mask.fill_null(False)
        count = typed.select(mask.sum()).item()
        if count:
            raise self.fail(column, f"{count} {reason}", typed, mask, shown)


def validate_frame(df: pl.DataFrame, schema: TableSchema, *, source: str, today: date) -> pl.DataFrame:
    """Validate ``df`` against ``schema``; return it in schema order with declared dtypes (ids in NFC).

    Raises :class:`InputDataError` for the first failing check, in the order of the stages below.
    """
    ctx = _Context(str(source), schema, today)
    _check_not_empty(ctx, df)
    _check_columns(ctx, df)
    raw = df.select(schema.column_names).with_row_index(ROW_COLUMN)
    typed = raw.select(ROW_COLUMN, *(cast_column(ctx, raw, col) for col in schema.columns))
    for col in schema.identifiers():
        typed = normalised_column(typed, col.name)
    for stage in _STAGES:
        stage(ctx, typed)
    return typed.drop(ROW_COLUMN)


def check_limits(df: pl.DataFrame, schema: TableSchema, *, source: str) -> None:
    """The id and plausibility stages alone, on a frame `validate_frame` already returned (a table validated
    before its case's limits were known)."""
    ctx = _Context(str(source), schema, date.max)
    typed = df.select(schema.column_names).with_row_index(ROW_COLUMN)
    _check_identifiers(ctx, typed)
    _check_plausible(ctx, typed)


def _check_not_empty(ctx: _Context, df: pl.DataFrame) -> None:
    if df.height == 0:
        raise ctx.fail(None, "the table has no data rows")


def _check_columns(ctx: _Context, df: pl.DataFrame) -> None:
    """Missing, then extra columns. Names that do not look like column names (a file that is no table, such
    as a system file) are counted, never echoed."""
    declared = ctx.schema.column_names
    present = list(df.columns)
    missing = [c for c in declared if c not in present]
    if missing:
        reason = f"missing column(s) {_quoted(missing)}; expected {_quoted(declared)}, found {_found(present)}"
        hints = _close_matches(missing, [c for c in present if c not in declared and _COLUMN_NAME.match(c)])
        raise ctx.fail(missing[0], reason + hints)
    extra = [c for c in present if c not in declared]
    if extra:
        raise ctx.fail(
            extra[0] if _COLUMN_NAME.match(extra[0]) else None,
            f"unexpected column(s) {_found(extra)}; the table declares only {_quoted(declared)}",
        )


def _check_finite(ctx: _Context, typed: pl.DataFrame) -> None:
    """Non-finite numbers and numbers beyond any quantity (1e308, overflows)."""
    for col in ctx.schema.columns:
        kind = kind_of(col.polars_dtype)
        if kind not in ("int", "float"):
            continue
        value = pl.col(col.name)
        mask = value.abs() > MAX_MAGNITUDE
        if kind == "float":
            mask = value.is_infinite() | mask
        ctx.refuse_where(typed, col.name, mask, f"value(s) infinite or beyond {MAX_MAGNITUDE:.0e} in absolute value")


def _check_nulls(ctx: _Context, typed: pl.DataFrame) -> None:
    """Nulls in non-nullable columns, then in key columns."""
    for col in ctx.schema.columns:
        if not col.nullable and col.name not in ctx.schema.key:
            ctx.refuse_where(
                typed, col.name, pl.col(col.name).is_null(), "missing (null) value(s) in a non-nullable column"
            )
    for name in ctx.schema.key:
        ctx.refuse_where(typed, name, pl.col(name).is_null(), f"missing (null) value(s) in key column '{name}'")


def _check_identifiers(ctx: _Context, typed: pl.DataFrame) -> None:
    """The id rule (lakehouse.common.ids) on every id column."""
    max_length = ctx.schema.limits.plausibility.max_id_length
    for col in ctx.schema.identifiers():
        refusal = column_refusal(typed.select(ROW_COLUMN, col.name), col.name, max_length=max_length)
        if refusal is not None:
            hint = (
                f" ({ID_RULE.format(max_length=max_length)}; the length is {ctx.schema.limits.where('max_id_length')})"
            )
            raise ctx.fail(
                col.name,
                refusal.reason + hint,
                typed,
                pl.col(ROW_COLUMN).is_in(refusal.rows[ROW_COLUMN].implode()),
            )


def _check_duplicate_keys(ctx: _Context, typed: pl.DataFrame) -> None:
    if not ctx.schema.key:
        return
    key = list(ctx.schema.key)
    key_expr = pl.col(key[0]) if len(key) == 1 else pl.struct(key)
    dupes = typed.filter(key_expr.is_duplicated())
    if not dupes.height:
        return
    groups = dupes.group_by(key, maintain_order=True).agg(pl.col(ROW_COLUMN).alias("rows")).head(MAX_EXAMPLE_ROWS)
    described = []
    for record in groups.iter_rows(named=True):
        value = ", ".join(render_value(record[k]) for k in key)
        value = f"({value})" if len(key) > 1 else value
        rows = record["rows"]
        described.append(f"{value} (rows {', '.join(str(r) for r in rows[:5])}{', …' if len(rows) > 5 else ''})")
    n_values = dupes.select(key).unique().height
    reason = (
        f"{n_values} duplicated key value(s) in key {_quoted(key)}: "
        + "; ".join(described)
        + ("; …" if n_values > len(described) else "")
    )
    raise InputDataError(ctx.source, ctx.schema.name, key[0] if len(key) == 1 else ", ".join(key), reason, dupes, key)


def _check_allowed(ctx: _Context, typed: pl.DataFrame) -> None:
    for col in ctx.schema.columns:
        if col.allowed is None:
            continue
        mask = pl.col(col.name).is_not_null() & ~pl.col(col.name).is_in(list(col.allowed))
        bad = typed.filter(mask)
        if bad.height:
            values = bad.get_column(col.name).unique(maintain_order=True).to_list()
            raise ctx.fail(
                col.name,
                f"{bad.height} value(s) not in the allowed set {_quoted(col.allowed)}: {examples(values)}",
                typed,
                mask,
            )


def _check_bounds(ctx: _Context, typed: pl.DataFrame) -> None:
    """The schema's own minimum and maximum."""
    for col in ctx.schema.columns:
        if col.min_value is not None:
            ctx.refuse_where(
                typed, col.name, pl.col(col.name) < col.min_value, f"value(s) below the minimum {_num(col.min_value)}"
            )
        if col.max_value is not None:
            ctx.refuse_where(
                typed, col.name, pl.col(col.name) > col.max_value, f"value(s) above the maximum {_num(col.max_value)}"
            )


def _check_plausible(ctx: _Context, typed: pl.DataFrame) -> None:
    """The case's plausibility limits (lakehouse.common.plausibility): amounts, dates, per-column bounds."""
    for col in ctx.schema.columns:
        bound = ctx.schema.limits.bound(ctx.schema.name, col)
        if bound is not None and bound.per is not None:
            bound = None  # per unit of a parent's column: checked across tables by the case's loader
        kind = kind_of(col.polars_dtype)
        if kind in ("date", "datetime"):
            _plausible_dates(ctx, typed, col, bound, kind)
        elif kind in ("int", "float"):
            _plausible_numbers(ctx, typed, col, bound)


def _column_setting(ctx: _Context, col: Column) -> str:
    return f"`{ctx.schema.name}.{col.name}` under {ctx.schema.limits.where('columns')}"


def _plausible_dates(ctx: _Context, typed: pl.DataFrame, col: Column, bound: Bound | None, kind: str) -> None:
    limits = ctx.schema.limits
    day = pl.col(col.name).dt.date() if kind == "datetime" else pl.col(col.name)
    if bound is not None and isinstance(bound.min, date):
        floor, setting = bound.min, _column_setting(ctx, col)
    elif col.before_data:
        floor, setting = limits.plausibility.earliest_date, limits.where("earliest_date")
    else:
        floor = limits.earliest_fact
        setting = f"{limits.where('history')} (back from calendar.start) or {limits.where('earliest_date')}"
    ctx.refuse_where(
        typed,
        col.name,
        day < pl.lit(floor, dtype=pl.Date),
        f"date(s) before {floor.isoformat()}: not plausible here; if they are right, move {setting}",
    )
    if bound is not None and isinstance(bound.max, date):
        ctx.refuse_where(
            typed,
            col.name,
            day > pl.lit(bound.max, dtype=pl.Date),
            f"date(s) after {bound.max.isoformat()}, the limit set by {_column_setting(ctx, col)}",
        )


def _plausible_numbers(ctx: _Context, typed: pl.DataFrame, col: Column, bound: Bound | None) -> None:
    value = pl.col(col.name)
    if col.quantity and (bound is None or bound.max is None):
        ceiling = ctx.schema.limits.plausibility.max_amount
        ctx.refuse_where(
            typed,
            col.name,
            value.abs() >= ceiling,
            f"value(s) of {ceiling:.0e} or more: not a plausible amount; if they are right, raise "
            f"{ctx.schema.limits.where('max_amount')} or set {_column_setting(ctx, col)}",
        )
    if bound is not None and isinstance(bound.min, int | float):
        reason = f"value(s) below {_num(bound.min)}, the limit set by {_column_setting(ctx, col)}"
        ctx.refuse_where(typed, col.name, value < bound.min, reason)
    if bound is not None and isinstance(bound.max, int | float):
        reason = f"value(s) above {_num(bound.max)}, the limit set by {_column_setting(ctx, col)}"
        ctx.refuse_where(typed, col.name, value > bound.max, reason)


def _check_not_in_future(ctx: _Context, typed: pl.DataFrame) -> None:
    for col in ctx.schema.columns:
        if not col.not_in_future:
            continue
        expr = pl.col(col.name)
        if isinstance(col.polars_dtype, pl.Datetime):
            expr = expr.dt.date()
        ctx.refuse_where(
            typed,
            col.name,
            expr > pl.lit(ctx.today, dtype=pl.Date),
            f"value(s) in the future (after {ctx.today.isoformat()})",
        )


def _check_rules(ctx: _Context, typed: pl.DataFrame) -> None:
    """Rules across the columns of a row (null operands pass)."""
    for rule in ctx.schema.rules:
        ctx.refuse_where(
            typed, rule.columns[0], ~rule.valid, f"row(s) break the rule: {rule.description}", rule.columns
        )


# The checks after the type conversion, in order; the first that fails is reported.
_STAGES = (
    _check_finite,
    _check_nulls,
    _check_identifiers,
    _check_duplicate_keys,
    _check_allowed,
    _check_bounds,
    _check_plausible,
    _check_not_in_future,
    _check_rules,
)

# What a column name looks like (at most 64 characters, no control character, no ':', '/' or '\\'); other header
# cells (a file that is no table, such as a system file) are counted, never echoed.
_COLUMN_NAME = re.compile(r"^[^:/\\\x00-\x1f\x7f-\x9f][^:/\\\x00-\x1f\x7f-\x9f]{0,63}$")


def reader_detail(exc: Exception, limit: int = 100) -> str:
    """A reader's error as a message may echo it: its first line, bounded (never the file's content past it)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def found_columns(names: Sequence[str]) -> str:
    """Column names as a message shows them; header cells that are no column name are counted, not echoed."""
    return _found(names)


def _found(names: Sequence[str]) -> str:
    shown = [n for n in names if _COLUMN_NAME.match(n)][:30]
    hidden = len(names) - len(shown)
    text = _quoted(shown) if shown else "no column name"
    if hidden:
        text += f" and {hidden} header cell(s) that are no column name (not shown: is it the right file?)"
    return text


def _quoted(names: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


def _close_matches(missing: Sequence[str], unexpected: Sequence[str]) -> str:
    lowered = {u.strip().lower(): u for u in unexpected}
    hints = []
    for name in missing:
        match = lowered.get(name.lower()) or next(iter(difflib.get_close_matches(name, unexpected, n=1)), None)
        if match is not None:
            hints.append(f"'{match}' -> '{name}'")
    return f" (did you mean: {', '.join(hints)}?)" if hints else ""


def validate_references(
    child: pl.DataFrame,
    child_col: str,
    parent: pl.DataFrame,
    parent_col: str,
    *,
    source: str,
    table: str,
    parent_table: str | None = None,
) -> None:
    """Raise InputDataError if non-null ``child[child_col]`` values are absent from ``parent[parent_col]``.

    Row numbers in the error are 0-based positions in ``child`` (file order when
    ``child`` came from :func:`read_table`). Null references are not reported here
    (nullability is the column schema's business).
    """
    child_dtype, parent_dtype = child.schema[child_col], parent.schema[parent_col]
    if child_dtype != parent_dtype:
        raise TypeError(
            f"cannot compare {table}.{child_col} ({child_dtype}) with {parent_table or 'parent'}.{parent_col} "
            f"({parent_dtype}); validate both tables first"
        )
    keys = parent.select(pl.col(parent_col).alias(child_col)).drop_nulls().unique()
    orphans = (
        child.with_row_index(ROW_COLUMN)
        .filter(pl.col(child_col).is_not_null())
        .join(keys, on=child_col, how="anti")
        .sort(ROW_COLUMN)
    )
    if orphans.height:
        target = f"{parent_table}.{parent_col}" if parent_table else f"'{parent_col}' of the parent table"
        values = orphans.get_column(child_col).unique(maintain_order=True).to_list()
        raise InputDataError(
            str(source),
            table,
            child_col,
            f"{orphans.height} row(s) reference value(s) missing from {target}: {examples(values)}",
            orphans.head(MAX_EXAMPLE_ROWS),
        )


# --------------------------------------------------------------------------- files


def read_table(path: str | Path, schema: TableSchema, *, today: date) -> pl.DataFrame:
    """Read a ``.parquet`` or ``.csv`` file and validate it against ``schema``.

    CSV files are read with every column as text and then converted by
    :func:`validate_frame`, so a type error names the column and the rows.
    """
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise InputDataError(
            source, schema.name, None, f"unsupported file type '{path.suffix}'; expected .parquet or .csv"
        )
    if not path.is_file():
        raise InputDataError(source, schema.name, None, "file not found")
    if path.stat().st_size == 0:
        raise InputDataError(source, schema.name, None, "the file is empty (0 bytes)")
    try:
        if suffix == ".csv":
            df = pl.read_csv(path, infer_schema=False)
        else:
            df = pl.read_parquet(path)
    except Exception as exc:  # any reader failure is a bad input file
        kind = "CSV" if suffix == ".csv" else "Parquet"
        raise InputDataError(
            source, schema.name, None, f"cannot read the file as {kind}: {reader_detail(exc)}"
        ) from None
    return validate_frame(df, schema, source=source, today=today)


def find_table_file(directory: Path, table: str) -> Path:
    """Return ``<directory>/<table>.parquet`` or ``<directory>/<table>.csv`` (exactly one must exist)."""
    directory = Path(directory)
    expected = [f"{table}{suffix}" for suffix in DATA_SUFFIXES]
    if not directory.is_dir():
        raise InputDataError(str(directory), table, None, "input directory not found")
    found = [directory / name for name in expected if (directory / name).is_file()]
    if not found:
        raise InputDataError(str(directory), table, None, f"no input file; expected {' or '.join(expected)}")
    if len(found) > 1:
        raise InputDataError(str(directory), table, None, f"both {' and '.join(expected)} exist; keep only one")
    return found[0]


def load_tables(directory: str | Path, schemas: Sequence[TableSchema], *, today: date) -> dict[str, pl.DataFrame]:
    """Read and validate every table; return them all or raise the first InputDataError."""
    names = [s.name for s in schemas]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicated table names in schemas: {names}")
    directory = Path(directory)
    tables: dict[str, pl.DataFrame] = {}
    for schema in schemas:
        tables[schema.name] = read_table(find_table_file(directory, schema.name), schema, today=today)
    return tables
