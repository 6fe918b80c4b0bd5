"""Series, periods and the data of a run: what every step of the case reads.

A series is one store x SKU (`unique_id` = `<store>/<sku>`). A period is a day, or a week
labelled by the weekday the user's weekly rows fall on (`Periods`). `CaseData` holds the tables;
`CaseData.until(as_of)` is the point-in-time cut, applied once where a step starts (a fit, a
backtest's origin): what it returns carries its `as_of`, and the steps below trust it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

import polars as pl

from lakehouse.forecast.settings import WEEKDAYS, Cadence, ForecastSettings

SERIES_KEYS = ("store_id", "sku_id")


def series_id(store: pl.Expr | str = "store_id", sku: pl.Expr | str = "sku_id") -> pl.Expr:
    store = pl.col(store) if isinstance(store, str) else store
    sku = pl.col(sku) if isinstance(sku, str) else sku
    return pl.concat_str([store, pl.lit("/"), sku]).alias("unique_id")


def split_id(frame: pl.DataFrame) -> pl.DataFrame:
    parts = pl.col("unique_id").str.split_exact("/", 1)
    return frame.with_columns(store_id=parts.struct.field("field_0"), sku_id=parts.struct.field("field_1"))


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class Periods:
    """Daily periods, or weeks labelled by one weekday (the last or the first day of the week)."""

    cadence: Cadence
    weekday: int | None = None  # 0 = Monday; weekly only
    dates: str = "end"

    @property
    def alias(self) -> str:
        """The pandas / Nixtla frequency alias."""
        return "D" if self.cadence.days == 1 else f"W-{WEEKDAYS[self.weekday]}"

    def label(self, day: pl.Expr) -> pl.Expr:
        """The period a day belongs to."""
        if self.cadence.days == 1:
            return day
        offset = (self.weekday - day.dt.weekday() + 1) % 7  # days forward to the anchor weekday
        return day + pl.duration(days=offset) if self.dates == "end" else day - pl.duration(days=(7 - offset) % 7)

    def first_day(self, label: pl.Expr) -> pl.Expr:
        return label - pl.duration(days=self.cadence.days - 1) if self.dates == "end" else label

    def last_day(self, label: date) -> date:
        """The last day of a period: data of the period is complete at its end."""
        return label if self.dates == "end" else label + timedelta(days=self.cadence.days - 1)

    def following(self, origin: date, count: int) -> list[date]:
        return [self.cadence.shift(origin, k) for k in range(1, count + 1)]

    def step(self, origin: pl.Expr, ds: pl.Expr) -> pl.Expr:
        return ((ds - origin).dt.total_days() // self.cadence.days).cast(pl.Int32)


def periods_of(settings: ForecastSettings, sales: pl.DataFrame) -> Periods:
    """The periods of the data: for weekly rows, the weekday their dates fall on (one only)."""
    cadence = settings.cadence
    if cadence.days == 1:
        return Periods(cadence)
    weekday = (
        WEEKDAYS.index(settings.week_day) if settings.week_day else int(sales["date"].dt.weekday().mode().sort()[0]) - 1
    )
    return Periods(cadence, weekday, settings.week_dates)


# --------------------------------------------------------------------------- the data of a run


@dataclass(frozen=True)
class CaseData:
    """Everything the models need, for one or many stores. Optional tables may be None."""

    stores: pl.DataFrame
    products: pl.DataFrame
    sales: pl.DataFrame  # store_id, sku_id, date (a period label), units
    promotions: pl.DataFrame | None = None
    events: pl.DataFrame | None = None
    covariates: pl.DataFrame | None = None
    as_of: date | None = None  # set by `until`: the last day whose facts are known; None: everything loaded

    def until(self, day: date) -> CaseData:
        """As known at the end of `day`: later sales are not yet recorded (announced facts stay: their
        own publication dates decide what a forecast sees)."""
        return replace(self, sales=self.sales.filter(pl.col("date") <= day), as_of=day)

    def known_at(self) -> date:
        """The cut-off a fit starts from; the data must have been cut by `until` first."""
        if self.as_of is None:
            raise ValueError("cut the data at the fit's date first: data.until(as_of)")
        return self.as_of

    def for_series(self, ids: pl.DataFrame) -> CaseData:
        """Only the series in `ids` (store_id, sku_id)."""
        return replace(self, sales=self.sales.join(ids.select(*SERIES_KEYS).unique(), on=list(SERIES_KEYS), how="semi"))

    @property
    def last_day(self) -> date:
        return self.sales["date"].max()


def history(data: CaseData) -> pl.DataFrame:
    """unique_id, store_id, sku_id, ds, y: one row per series and period."""
    return data.sales.select(
        series_id(), "store_id", "sku_id", pl.col("date").alias("ds"), pl.col("units").cast(pl.Float64).alias("y")
    ).sort("unique_id", "ds")


def to_pandas(df: pl.DataFrame):
    """The frame for statsforecast / mlforecast, with `ds` as pandas datetimes."""
    import pandas as pd

    out = df.to_pandas()
    if "ds" in out:
        out["ds"] = pd.to_datetime(out["ds"])
    return out
