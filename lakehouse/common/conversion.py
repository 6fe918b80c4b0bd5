"""Strict conversion of a raw column to its declared type (the type stage of schema validation).

Text is parsed, integers widen to floats, floats become integers only when integral, datetimes
become dates only at midnight, zones are converted; anything else, or any value that does not
convert, is refused with the column and the rows (see lakehouse.common.schema's docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl

from lakehouse.common.ids import ECHO_LIMIT, shown

ROW_COLUMN = "row"
#: How many example rows and values an error carries and shows.
MAX_EXAMPLES = 5
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


def instance(dtype: type[pl.DataType] | pl.DataType) -> pl.DataType:
    """``pl.Int64`` -> ``pl.Int64()``; instances are returned unchanged."""
    return dtype() if isinstance(dtype, type) else dtype


def kind(dtype: pl.DataType) -> str:
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
ACCEPTS: dict[str, frozenset[str]] = {
    "string": frozenset({"string", "int", "null"}),
    "int": frozenset({"int", "float", "string", "null"}),
    "float": frozenset({"int", "float", "string", "null"}),
    "bool": frozenset({"bool", "string", "null"}),
    "date": frozenset({"date", "datetime", "string", "null"}),
    "datetime": frozenset({"datetime", "date", "string", "null"}),
}


def type_name(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone:
            return f"Datetime({dtype.time_unit}, {dtype.time_zone})"
        return f"Datetime({dtype.time_unit})"
    return str(dtype)


def cast_column(ctx, raw: pl.DataFrame, col) -> pl.Series:
    """Strictly convert one raw column to its declared dtype or raise InputDataError."""
    target = col.polars_dtype
    series = raw.get_column(col.name)
    source = series.dtype
    src_kind, tgt_kind = kind(source), kind(target)

    if src_kind not in ACCEPTS[tgt_kind]:
        non_null = pl.col(col.name).is_not_null()
        raise ctx.fail(
            col.name,
            f"has type {type_name(source)} but {type_name(target)} is declared",
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
        values = bad.get_column("_raw").unique(maintain_order=True).to_list()
        raise ctx.fail(
            col.name,
            f"{bad.height} value(s) cannot be read as {type_name(target)}{_format_hint(tgt_kind)}: {examples(values)}",
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


def render_value(value: object, limit: int = ECHO_LIMIT) -> str:
    """A value as an error shows it: dates in ISO, text escaped and bounded (lakehouse.common.ids.shown)."""
    if value is None:
        return "null"
    if isinstance(value, date):  # also datetime
        return value.isoformat()
    return shown(value, limit)


def examples(values: Sequence[object], limit: int = MAX_EXAMPLES) -> str:
    listed = ", ".join(render_value(v) for v in list(values)[:limit])
    return listed + (", …" if len(values) > limit else "")
