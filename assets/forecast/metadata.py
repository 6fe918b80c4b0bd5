"""Tables of the forecast case as a person reads them in the UI: rates as percentages."""

import dagster as dg
import polars as pl

from assets.common import table


def percent_table(frame: pl.DataFrame, *rates: str) -> dg.MetadataValue:
    """`frame` with its rate columns as percentages (`wape` -> `wape %`, 0.127 -> 12.70)."""
    shown = frame.with_columns([(pl.col(c) * 100).alias(c) for c in rates]).rename({c: f"{c} %" for c in rates})
    return table(shown, "{:,.2f}")
