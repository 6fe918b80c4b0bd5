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

Checks run in a fixed order and the first failing check is reported:
empty table, missing columns, extra columns, types (strict cast to the declared
dtype), non-finite or implausibly large numbers, nulls in non-nullable columns,
null keys, malformed identifiers (control characters, path separators,
surrounding whitespace, ids that differ only by whitespace), duplicate keys,
allowed values, min/max bounds, dates in the future, cross-column rules (e.g. a
closing date before its opening date).

Conversion rules of the type check (values are never silently changed, except
that NaN in a float column is treated as null and surrounding whitespace is
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

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

__all__ = [
    "DATA_SUFFIXES",
    "ROW_COLUMN",
    "Column",
    "InputDataError",
    "RowRule",
    "TableSchema",
    "find_table_file",
    "load_tables",
    "read_table",
    "validate_frame",
    "validate_references",
]

#: Name of the 0-based row-number column in :attr:`InputDataError.rows`.
ROW_COLUMN = "row"

#: How many example rows an error carries and shows.
MAX_EXAMPLE_ROWS = 5

DATA_SUFFIXES = (".parquet", ".csv")
#: No quantity this platform handles comes near this; larger values are input errors (1e308, overflows).
MAX_MAGNITUDE = 1e15
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_DATETIME_TZ_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M%#z",
)


# --------------------------------------------------------------------------- dtypes


def _instance(dtype: type[pl.DataType] | pl.DataType) -> pl.DataType:
    """``pl.Int64`` -> ``pl.Int64()``; instances are returned unchanged."""
    return dtype() if isinstance(dtype, type) else dtype


def _kind(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.String | pl.Categorical | pl.Enum):
        return "string"
    if isinstance(dtype, pl.Boolean):
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if isinstance(dtype, pl.Date):
        return "date"
    if isinstance(dtype, pl.Null):
        return "null"
    return "other"


# Source kinds accepted for each declared (target) kind; see the module docstring.
_ACCEPTS: dict[str, frozenset[str]] = {
    "string": frozenset({"string", "int", "null"}),
    "int": frozenset({"int", "float", "string", "null"}),
    "float": frozenset({"int", "float", "string", "null"}),
    "bool": frozenset({"bool", "string", "null"}),
    "date": frozenset({"date", "datetime", "string", "null"}),
    "datetime": frozenset({"datetime", "date", "string", "null"}),
}


def _type_name(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone:
            return f"Datetime({dtype.time_unit}, {dtype.time_zone})"
        return f"Datetime({dtype.time_unit})"
    return str(dtype)


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
    identifier: bool = False  # an id: no control characters, path separators or surrounding whitespace

    def __post_init__(self) -> None:
        dtype = _instance(self.dtype)
        kind = _kind(dtype)
        if kind not in _ACCEPTS or isinstance(dtype, pl.Categorical | pl.Enum):
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

    @property
    def polars_dtype(self) -> pl.DataType:
        return _instance(self.dtype)

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
        return [c for c in self.columns if c.identifier or (c.name in self.key and _kind(c.polars_dtype) == "string")]

    def restricted(self, names) -> TableSchema:
        """The schema without the columns not in `names` (optional columns a file lacks)."""
        keep = tuple(c for c in self.columns if c.name in set(names))
        rules = tuple(r for r in self.rules if set(r.columns) <= {c.name for c in keep})
        return TableSchema(self.name, self.description, keep, self.key, rules)

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
            cells = [f"`{col.name}`", _type_name(col.polars_dtype), nullable, rule, col.description]
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


def _render_value(value: object, limit: int = 40) -> str:
    if value is None:
        return "null"
    if isinstance(value, date):  # also datetime
        text = value.isoformat()
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _render_rows(rows: pl.DataFrame, show_columns: Sequence[str] | None, max_columns: int = 8) -> str:
    columns = [c for c in (show_columns or rows.columns) if c in rows.columns and c != ROW_COLUMN]
    hidden = len(columns) > max_columns
    columns = columns[:max_columns]
    rendered = []
    for record in rows.iter_rows(named=True):
        fields = ", ".join(f"{c}={_render_value(record[c])}" for c in columns)
        if hidden:
            fields += ", …"
        prefix = f"row {record[ROW_COLUMN]}" if ROW_COLUMN in record else "row ?"
        rendered.append(f"{prefix}: {fields}")
    return " | ".join(rendered)


def _examples(values: Sequence[object], limit: int = MAX_EXAMPLE_ROWS) -> str:
    shown = ", ".join(_render_value(v) for v in list(values)[:limit])
    return shown + (", …" if len(values) > limit else "")


# --------------------------------------------------------------------------- validation


class _Context:
    """Shared state of one validate_frame call (source, schema, row numbers)."""

    def __init__(self, source: str, schema: TableSchema) -> None:
        self.source = source
        self.schema = schema

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


def validate_frame(df: pl.DataFrame, schema: TableSchema, *, source: str, today: date) -> pl.DataFrame:
    """Validate ``df`` against ``schema``; return it in schema order with declared dtypes.

    Raises :class:`InputDataError` for the first failing check (see module docstring).
    """
    ctx = _Context(str(source), schema)
    declared = schema.column_names

    # 1. empty
    if df.height == 0:
        raise ctx.fail(None, "the table has no data rows")

    # 2. missing columns / 3. extra columns
    present = list(df.columns)
    missing = [c for c in declared if c not in present]
    if missing:
        reason = f"missing column(s) {_quoted(missing)}; expected {_quoted(declared)}, found {_quoted(present)}"
        hints = _close_matches(missing, [c for c in present if c not in declared])
        raise ctx.fail(missing[0], reason + hints)
    extra = [c for c in present if c not in declared]
    if extra:
        raise ctx.fail(
            extra[0],
            f"unexpected column(s) {_quoted(extra)}; the table declares only {_quoted(declared)}",
        )

    # Raw frame in schema order with 0-based row numbers (used for example rows).
    raw = df.select(declared).with_row_index(ROW_COLUMN)

    # 4. types
    typed = raw.select(ROW_COLUMN, *(_cast_column(ctx, raw, col) for col in schema.columns))

    # 4b. non-finite and implausibly large numbers
    for col in schema.columns:
        if _kind(col.polars_dtype) not in ("int", "float"):
            continue
        value = pl.col(col.name)
        mask = (
            value.is_infinite() | (value.abs() > MAX_MAGNITUDE)
            if _kind(col.polars_dtype) == "float"
            else value.abs() > MAX_MAGNITUDE
        )
        count = typed.select(mask.sum()).item()
        if count:
            raise ctx.fail(
                col.name, f"{count} value(s) infinite or beyond {MAX_MAGNITUDE:.0e} in absolute value", typed, mask
            )

    # 5. nulls in non-nullable (non-key) columns
    for col in schema.columns:
        if col.nullable or col.name in schema.key:
            continue
        mask = pl.col(col.name).is_null()
        count = typed.select(mask.sum()).item()
        if count:
            raise ctx.fail(col.name, f"{count} missing (null) value(s) in a non-nullable column", typed, mask)

    # 6. null keys
    for name in schema.key:
        mask = pl.col(name).is_null()
        count = typed.select(mask.sum()).item()
        if count:
            raise ctx.fail(name, f"{count} missing (null) value(s) in key column '{name}'", typed, mask)

    # 6b. identifiers
    for col in schema.identifiers():
        value = pl.col(col.name)
        for mask, what in (
            (value.str.contains(r"[\x00-\x1f\x7f]"), "control characters (tab, newline, ...)"),
            (value.str.contains(r"[/\\]") | value.str.contains("..", literal=True), "path separators or '..'"),
            (value != value.str.strip_chars(), "leading or trailing whitespace"),
        ):
            count = typed.select(mask.fill_null(False).sum()).item()
            if count:
                raise ctx.fail(col.name, f"{count} id(s) with {what}", typed, mask.fill_null(False))
        folded = value.str.replace_all(r"\s+", "")
        variants = (
            typed.select(ROW_COLUMN, col.name)
            .drop_nulls()
            .with_columns(_folded=folded)
            .filter(pl.col(col.name).n_unique().over("_folded") > 1)
        )
        if variants.height:
            examples = (
                variants.group_by("_folded", maintain_order=True).agg(pl.col(col.name).unique()).head(MAX_EXAMPLE_ROWS)
            )
            shown = "; ".join(" vs ".join(repr(v) for v in ids) for ids in examples[col.name].to_list())
            raise ctx.fail(
                col.name,
                f"ids that differ only by whitespace: {shown}",
                typed,
                pl.col(ROW_COLUMN).is_in(variants[ROW_COLUMN].implode()),
            )

    # 7. duplicate keys
    if schema.key:
        key = list(schema.key)
        key_expr = pl.col(key[0]) if len(key) == 1 else pl.struct(key)
        mask = key_expr.is_duplicated()
        dupes = typed.filter(mask)
        if dupes.height:
            groups = (
                dupes.group_by(key, maintain_order=True).agg(pl.col(ROW_COLUMN).alias("rows")).head(MAX_EXAMPLE_ROWS)
            )
            described = []
            for record in groups.iter_rows(named=True):
                value = ", ".join(_render_value(record[k]) for k in key)
                value = f"({value})" if len(key) > 1 else value
                described.append(f"{value} (rows {', '.join(str(r) for r in record['rows'])})")
            n_values = dupes.select(key).unique().height
            reason = (
                f"{n_values} duplicated key value(s) in key {_quoted(key)}: "
                + "; ".join(described)
                + ("; …" if n_values > len(described) else "")
            )
            raise InputDataError(
                ctx.source,
                schema.name,
                key[0] if len(key) == 1 else ", ".join(key),
                reason,
                dupes,
                key,
            )

    # 8. allowed values
    for col in schema.columns:
        if col.allowed is None:
            continue
        mask = pl.col(col.name).is_not_null() & ~pl.col(col.name).is_in(list(col.allowed))
        bad = typed.filter(mask)
        if bad.height:
            values = bad.get_column(col.name).unique(maintain_order=True).to_list()
            raise ctx.fail(
                col.name,
                f"{bad.height} value(s) not in the allowed set {_quoted(col.allowed)}: {_examples(values)}",
                typed,
                mask,
            )

    # 9. min / max
    for col in schema.columns:
        for bound, op, word in ((col.min_value, "lt", "below the minimum"), (col.max_value, "gt", "above the maximum")):
            if bound is None:
                continue
            mask = getattr(pl.col(col.name), op)(bound)
            count = typed.select(mask.sum()).item()
            if count:
                raise ctx.fail(col.name, f"{count} value(s) {word} {_num(bound)}", typed, mask)

    # 10. dates in the future
    for col in schema.columns:
        if not col.not_in_future:
            continue
        expr = pl.col(col.name)
        if isinstance(col.polars_dtype, pl.Datetime):
            expr = expr.dt.date()
        mask = expr > pl.lit(today, dtype=pl.Date)
        count = typed.select(mask.sum()).item()
        if count:
            raise ctx.fail(col.name, f"{count} value(s) in the future (after {today.isoformat()})", typed, mask)

    # 11. rules across columns
    for rule in schema.rules:
        mask = ~rule.valid.fill_null(True)
        count = typed.select(mask.sum()).item()
        if count:
            raise ctx.fail(
                rule.columns[0], f"{count} row(s) break the rule: {rule.description}", typed, mask, rule.columns
            )

    return typed.drop(ROW_COLUMN)


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


def _cast_column(ctx: _Context, raw: pl.DataFrame, col: Column) -> pl.Series:
    """Strictly convert one raw column to its declared dtype or raise InputDataError."""
    target = col.polars_dtype
    series = raw.get_column(col.name)
    source = series.dtype
    src_kind, tgt_kind = _kind(source), _kind(target)

    if src_kind not in _ACCEPTS[tgt_kind]:
        non_null = pl.col(col.name).is_not_null()
        raise ctx.fail(
            col.name,
            f"has type {_type_name(source)} but {_type_name(target)} is declared",
            raw,
            non_null,
        )

    if src_kind == "null":
        return pl.Series(col.name, [None] * raw.height, dtype=target)

    value = pl.col(col.name)
    if src_kind == "string" and tgt_kind != "string":
        # Parse text; blank text counts as missing (null), like an empty CSV field.
        value = value.cast(pl.String).str.strip_chars()
        value = pl.when(value == "").then(None).otherwise(value)
        converted = _parse_text(value, target, tgt_kind)
    elif tgt_kind == "datetime" and src_kind == "datetime":
        converted = _convert_datetime(value, source, target)
    elif tgt_kind == "datetime" and src_kind == "date":
        converted = value.cast(pl.Datetime(target.time_unit)).pipe(
            lambda e: e.dt.replace_time_zone(target.time_zone) if target.time_zone else e
        )
    else:
        converted = value.cast(target, strict=False)

    if tgt_kind == "float":
        converted = converted.fill_nan(None)  # NaN counts as missing

    frame = raw.select(ROW_COLUMN, pl.col(col.name).alias("_raw"), converted.alias("_new"))
    failed = pl.col("_raw").is_not_null() & pl.col("_new").is_null()
    if src_kind == "string" and tgt_kind != "string":
        failed = failed & (pl.col("_raw").cast(pl.String).str.strip_chars() != "")
    if tgt_kind == "float" and src_kind == "float":
        failed = failed & ~pl.col("_raw").is_nan()  # NaN -> null is a normalisation, not a failure
    if (src_kind, tgt_kind) in {("float", "int"), ("datetime", "date")}:
        # Lossy conversions (1.5 -> 1, 10:30 -> date) are failures.
        failed = failed | (pl.col("_new").is_not_null() & (pl.col("_new").cast(source) != pl.col("_raw")))
    bad = frame.filter(failed)
    if bad.height:
        examples = bad.get_column("_raw").unique(maintain_order=True).to_list()
        raise ctx.fail(
            col.name,
            f"{bad.height} value(s) cannot be read as {_type_name(target)}{_format_hint(tgt_kind)}: "
            f"{_examples(examples)}",
            raw,
            pl.col(ROW_COLUMN).is_in(bad.get_column(ROW_COLUMN).implode()),
        )
    return frame.get_column("_new").alias(col.name).cast(target)


def _format_hint(kind: str) -> str:
    return {
        "date": " (expected an ISO date YYYY-MM-DD)",
        "datetime": " (expected an ISO datetime YYYY-MM-DD[ T]HH:MM[:SS])",
        "bool": " (expected true/false)",
    }.get(kind, "")


def _parse_text(value: pl.Expr, target: pl.DataType, kind: str) -> pl.Expr:
    if kind == "bool":
        lowered = value.str.to_lowercase()
        return (
            pl.when(lowered.is_in(list(_TRUE)))
            .then(pl.lit(True))
            .when(lowered.is_in(list(_FALSE)))
            .then(pl.lit(False))
            .otherwise(pl.lit(None, dtype=pl.Boolean))
        )
    if kind == "date":
        return value.str.to_date("%Y-%m-%d", strict=False)
    if kind == "datetime":
        text = value.str.replace(r"^(\d{4}-\d{2}-\d{2})[Tt]", "${1} ")
        unit, zone = target.time_unit, target.time_zone
        naive = pl.coalesce([text.str.to_datetime(f, time_unit=unit, strict=False) for f in _DATETIME_FORMATS])
        aware = pl.coalesce(
            [text.str.to_datetime(f, time_unit=unit, strict=False) for f in _DATETIME_TZ_FORMATS]
        ).dt.convert_time_zone(zone or "UTC")
        if zone:
            naive = naive.dt.replace_time_zone(zone)
        else:
            aware = aware.dt.replace_time_zone(None)
        return pl.coalesce([naive, aware])
    return value.cast(target, strict=False)


def _convert_datetime(value: pl.Expr, source: pl.Datetime, target: pl.Datetime) -> pl.Expr:
    if source.time_zone != target.time_zone:
        if source.time_zone is None:
            value = value.dt.replace_time_zone(target.time_zone)
        elif target.time_zone is None:
            value = value.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        else:
            value = value.dt.convert_time_zone(target.time_zone)
    return value.dt.cast_time_unit(target.time_unit)


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
            f"{orphans.height} row(s) reference value(s) missing from {target}: {_examples(values)}",
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
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputDataError(source, schema.name, None, f"cannot read the file as {kind}: {detail}") from exc
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
