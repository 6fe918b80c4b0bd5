"""Segmentation of every store x SKU series, and of stores (tourist vs residential).

Rules, applied in this order on the history known at the cut-off (docs/forecast.md):

1. new: less than 6 months of history (first sale within the last 182 days);
2. promo: at least 12 % of the last year's days under promotion, and promotion days
   selling at least 1.5x the other days;
3. seasonal: weekly + yearly pattern strength >= 0.35 (share of the variance explained by
   day-of-week and month means, last 365 days), or a variability the stable model would not
   follow (coefficient of variation above 0.45);
4. stable: everything else (low variability, weak seasonality).
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from lakehouse.forecast.config import SegmentRules
from lakehouse.forecast.features import StoreData, promotions_known


def series_statistics(data: StoreData, as_of: date) -> pl.DataFrame:
    """Per SKU of the store: history length, CV, seasonality strength, promotion share and uplift."""
    sales = data.sales.filter(pl.col("date") <= as_of)
    year = sales.filter(pl.col("date") > as_of - timedelta(days=365))
    if not data.promotions.is_empty():
        promo_days = (
            promotions_known(data.promotions, None)
            .filter(pl.col("region").is_null() | (pl.col("region") == data.store["region"]))
            .select("sku_id", "date")
            .unique()
            .with_columns(on_promo=pl.lit(True))
        )
        year = year.join(promo_days, on=["sku_id", "date"], how="left").with_columns(pl.col("on_promo").fill_null(False))
    else:
        year = year.with_columns(on_promo=pl.lit(False))
    year = year.with_columns(
        y=pl.col("units").cast(pl.Float64),
        dow=pl.col("date").dt.weekday(),
        month=pl.col("date").dt.month(),
    )
    # Seasonality strength on non-promotion days: 1 - Var(residual) / Var(y), residual after
    # removing day-of-week and month effects.
    regular = year.filter(~pl.col("on_promo")).with_columns(
        mean=pl.col("y").mean().over("sku_id"),
        dow_effect=pl.col("y").mean().over("sku_id", "dow") - pl.col("y").mean().over("sku_id"),
        month_effect=pl.col("y").mean().over("sku_id", "month") - pl.col("y").mean().over("sku_id"),
    ).with_columns(residual=pl.col("y") - pl.col("mean") - pl.col("dow_effect") - pl.col("month_effect"))
    strength = regular.group_by("sku_id").agg(
        seasonality_strength=(1 - pl.col("residual").var() / pl.col("y").var()).fill_nan(0.0).clip(0, 1),
        cv=(pl.col("y").std() / pl.col("y").mean()).fill_nan(0.0),
    )
    promo = year.group_by("sku_id").agg(
        promo_share=pl.col("on_promo").mean(),
        promo_uplift=(pl.col("y").filter(pl.col("on_promo")).mean() / pl.col("y").filter(~pl.col("on_promo")).mean()),
    )
    length = sales.group_by("sku_id").agg(
        first_sale=pl.col("date").min(),
        history_days=((pl.lit(as_of) - pl.col("date").min()).dt.total_days() + 1).cast(pl.Int64),
    )
    return (
        length.join(strength, on="sku_id", how="left")
        .join(promo, on="sku_id", how="left")
        .with_columns(pl.col("promo_uplift").fill_null(1.0).fill_nan(1.0), pl.col("promo_share").fill_null(0.0))
        .with_columns(pl.col("seasonality_strength", "cv").fill_null(0.0))
    )


def assign_segments(stats: pl.DataFrame, rules: SegmentRules) -> pl.DataFrame:
    segment = (
        pl.when(pl.col("history_days") < rules.new_max_history_days)
        .then(pl.lit("new"))
        .when((pl.col("promo_share") >= rules.promo_min_share) & (pl.col("promo_uplift") >= rules.promo_min_uplift))
        .then(pl.lit("promo"))
        .when((pl.col("seasonality_strength") >= rules.seasonal_min_strength) | (pl.col("cv") > rules.stable_max_cv))
        .then(pl.lit("seasonal"))
        .otherwise(pl.lit("stable"))
    )
    return stats.with_columns(segment=segment)


def segment_store(data: StoreData, as_of: date, rules: SegmentRules) -> pl.DataFrame:
    stats = assign_segments(series_statistics(data, as_of), rules)
    return stats.with_columns(store_id=pl.lit(data.store_id), as_of=pl.lit(as_of)).select(
        "store_id", "sku_id", "segment", "history_days", "cv", "seasonality_strength", "promo_share", "promo_uplift", "first_sale", "as_of"
    ).sort("sku_id")


def store_profile(data: StoreData, as_of: date, rules: SegmentRules) -> dict:
    """Measured store segment: summer (Jul-Aug) over spring (Apr-May) sales in the last full year."""
    sales = data.sales.filter((pl.col("date") <= as_of) & (pl.col("date") > as_of - timedelta(days=365)))
    month = sales.with_columns(m=pl.col("date").dt.month()).group_by("m").agg(pl.col("units").sum() / pl.col("date").n_unique())
    per_day = dict(month.iter_rows())
    spring = [per_day[m] for m in (4, 5) if m in per_day]
    summer = [per_day[m] for m in (7, 8) if m in per_day]
    ratio = (sum(summer) / len(summer)) / (sum(spring) / len(spring)) if spring and summer else None
    measured = None if ratio is None else ("tourist" if ratio >= rules.tourist_min_summer_ratio else "residential")
    return {"store_id": data.store_id, "declared_type": data.store["store_type"], "summer_ratio": ratio, "measured_type": measured}
