"""Point-in-time features: what was known when a forecast was made.

Promotions and weather forecasts are announced facts. A forecast made at origin T sees only
the promotion versions published on or before T and the weather forecasts issued on or
before T. Training rows use the same rule with T = the day before the row's date, so the
models learn from features as they looked one day ahead. Missing optional tables (no
promotions, no weather, no events) simply drop their columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
import polars as pl

from lakehouse.forecast.config import REGIONS, Frequency
from lakehouse.forecast.world import CATEGORIES, STORE_TYPES

FAMILIES = tuple(f"{c}-{f}" for c, fams in CATEGORIES.items() for f in fams)


def series_id(store_id: str, sku_id: str) -> str:
    return f"{store_id}/{sku_id}"


@dataclass(frozen=True)
class StoreData:
    """Everything one store's forecast needs; optional tables may be empty."""

    store: dict
    products: pl.DataFrame
    sales: pl.DataFrame  # store_id, sku_id, date, units (daily)
    promotions: pl.DataFrame
    weather_forecasts: pl.DataFrame
    events: pl.DataFrame

    @property
    def store_id(self) -> str:
        return self.store["store_id"]

    def until(self, day: date) -> StoreData:
        """The store as known at the end of `day`: sales after it are not yet recorded."""
        return StoreData(self.store, self.products, self.sales.filter(pl.col("date") <= day), self.promotions, self.weather_forecasts, self.events)


def period_start(expr: pl.Expr, freq: Frequency) -> pl.Expr:
    return expr if freq.days == 1 else expr.dt.truncate("1w")


def history(data: StoreData, freq: Frequency) -> pl.DataFrame:
    """unique_id, ds, y at the configured frequency (weekly sums start on Mondays)."""
    sales = data.sales.with_columns(ds=period_start(pl.col("date"), freq))
    if freq.days > 1:  # a week counts only once complete
        counts = sales.group_by("sku_id", "ds").agg(pl.len().alias("n"), pl.col("units").sum())
        sales = counts.filter(pl.col("n") == freq.days)
    return (
        sales.group_by("sku_id", "ds")
        .agg(pl.col("units").sum().cast(pl.Float64).alias("y"))
        .with_columns(unique_id=pl.lit(data.store_id + "/") + pl.col("sku_id"))
        .select("unique_id", "sku_id", "ds", "y")
        .sort("unique_id", "ds")
    )


# --------------------------------------------------------------------------- announced facts


def promotions_known(promos: pl.DataFrame, as_of: date | None) -> pl.DataFrame:
    """Promotion days as known at `as_of` (None: as known the day before each promotion day).

    Returns sku_id, region (null = whole chain), date, discount_pct. For each promotion only
    the latest version published by the cut-off counts, with its own dates and discount.
    """
    if promos.is_empty():
        return pl.DataFrame(schema={"sku_id": pl.String, "region": pl.String, "date": pl.Date, "discount_pct": pl.Float64})
    versions = promos.sort("promo_id", "version").with_columns(
        valid_to=pl.col("published_date").shift(-1).over("promo_id")
    )
    if as_of is not None:
        versions = versions.filter(pl.col("published_date") <= as_of).group_by("promo_id").agg(pl.all().sort_by("version").last())
    days = versions.with_columns(date=pl.date_ranges("start_date", "end_date")).explode("date")
    if as_of is None:
        known = pl.col("date") - pl.duration(days=1)
        days = days.filter((pl.col("published_date") <= known) & (pl.col("valid_to").is_null() | (known < pl.col("valid_to"))))
    return days.select("sku_id", "region", "date", "discount_pct")


def weather_known(weather: pl.DataFrame, as_of: date | None) -> pl.DataFrame:
    """region, date, temp_c: the latest forecast issued by `as_of` (None: issued the day before)."""
    if weather.is_empty():
        return pl.DataFrame(schema={"region": pl.String, "date": pl.Date, "temp_c": pl.Float64})
    if as_of is None:
        known = weather.filter(pl.col("issue_date") == pl.col("target_date") - pl.duration(days=1))
    else:
        known = weather.filter((pl.col("issue_date") <= as_of) & (pl.col("target_date") > as_of)).sort("issue_date").group_by("region", "target_date").last()
    return known.select("region", pl.col("target_date").alias("date"), "temp_c")


# --------------------------------------------------------------------------- exogenous frame


def exogenous(data: StoreData, dates: list[date], as_of: date | None, freq: Frequency) -> pl.DataFrame:
    """Dynamic features per SKU and period of one store: promotion, weather, calendar, age."""
    region = data.store["region"]
    grid = (
        data.products.select("sku_id", "launch_date")
        .join(pl.DataFrame({"date": dates}, schema={"date": pl.Date}), how="cross")
        .with_columns(product_age=(pl.col("date") - pl.col("launch_date")).dt.total_days().clip(0, 3650).cast(pl.Float64))
        .drop("launch_date")
    )
    if not data.promotions.is_empty():
        promo = (
            promotions_known(data.promotions, as_of)
            .filter(pl.col("region").is_null() | (pl.col("region") == region))
            .group_by("sku_id", "date")
            .agg(pl.col("discount_pct").max().alias("promo_discount"))
        )
        grid = grid.join(promo, on=["sku_id", "date"], how="left").with_columns(pl.col("promo_discount").fill_null(0.0))
    if not data.weather_forecasts.is_empty():
        temp = weather_known(data.weather_forecasts, as_of).filter(pl.col("region") == region).drop("region")
        grid = grid.join(temp, on="date", how="left")  # beyond 7 days ahead: unknown (null)
    if not data.events.is_empty():
        ev = data.events.filter(pl.col("region").is_null() | (pl.col("region") == region))
        holidays = ev.filter(pl.col("kind") == "holiday")["date"]
        local = ev.filter(pl.col("kind") == "local_event")["date"]
        grid = grid.with_columns(
            is_holiday=pl.col("date").is_in(holidays.implode()).cast(pl.Float64),
            pre_holiday=(pl.col("date") + pl.duration(days=1)).is_in(holidays.implode()).cast(pl.Float64),
            local_event=pl.col("date").is_in(local.implode()).cast(pl.Float64),
        )
    grid = grid.with_columns(ds=period_start(pl.col("date"), freq))
    if freq.days > 1:
        value_columns = [c for c in grid.columns if c not in ("sku_id", "date", "ds")]
        grid = grid.group_by("sku_id", "ds").agg([pl.col(c).mean() for c in value_columns])
    return grid.drop("date", strict=False).with_columns(unique_id=pl.lit(data.store_id + "/") + pl.col("sku_id")).drop("sku_id")


def static_features(data: StoreData) -> pl.DataFrame:
    """Per-series constants: product attributes and the store's segment (tourist or residential)."""
    return data.products.select(
        unique_id=pl.lit(data.store_id + "/") + pl.col("sku_id"),
        category_code=pl.col("category").replace_strict(list(CATEGORIES), list(range(len(CATEGORIES))), default=-1).cast(pl.Int32),
        family_code=pl.col("family").replace_strict(list(FAMILIES), list(range(len(FAMILIES))), default=-1).cast(pl.Int32),
        perishable=pl.col("perishable").cast(pl.Int32),
        price_eur=pl.col("price_eur"),
        tourist_store=pl.lit(int(data.store["store_type"] == STORE_TYPES[0]), dtype=pl.Int32),
        region_code=pl.lit(REGIONS.index(data.store["region"]) if data.store["region"] in REGIONS else -1, dtype=pl.Int32),
    )


STATIC_COLUMNS = ("category_code", "family_code", "perishable", "price_eur", "tourist_store", "region_code")


def future_periods(origin: date, freq: Frequency) -> list[date]:
    """The horizon's period starts after an origin (the last day of known sales)."""
    if freq.days == 1:
        return [origin + timedelta(days=k) for k in range(1, freq.horizon + 1)]
    first = origin + timedelta(days=1)
    first = first + timedelta(days=(7 - first.weekday()) % 7)
    return [first + timedelta(weeks=k) for k in range(freq.horizon)]


def to_pandas(df: pl.DataFrame) -> pd.DataFrame:
    out = df.to_pandas()
    if "ds" in out:
        out["ds"] = pd.to_datetime(out["ds"])
    return out
