"""Segmentation of every store x SKU series, on the history known at a cut-off.

Rules, in this order (thresholds in `ForecastSettings.segmentation`):

1. new: first sale less than `new_max_history` ago (seed: 6 months);
2. promo: at least 12 % of the last year's periods under a promotion (as announced the day
   before), and promotion periods selling at least 1.5x the others;
3. seasonal: the calendar pattern (weekday and month means for daily data, month means for
   weekly data) explains at least 35 % of the variance on non-promotion periods of the last
   year, or a variability a local statistical model would not follow (CV above 0.45);
4. stable: everything else.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from lakehouse.forecast.data import CaseData, Periods, history
from lakehouse.forecast.features import match_scope, promotions_known, series_attributes
from lakehouse.forecast.settings import ForecastSettings

SEGMENT_COLUMNS = {
    "store_id": "Store.",
    "sku_id": "SKU.",
    "segment": "stable | seasonal | new | promo (rules in lakehouse/forecast/segmentation.py).",
    "history_periods": "Periods since the first sale.",
    "cv": "Coefficient of variation over the last year (non-promotion periods).",
    "seasonality_strength": "Share of the variance explained by the calendar (weekday and month means).",
    "promo_share": "Share of last year's periods under promotion.",
    "promo_uplift": "Promotion-period sales over the other periods.",
    "zero_share": "Share of last year's periods without a sale.",
    "as_of": "Cut-off of the segmentation.",
}


def series_statistics(data: CaseData, settings: ForecastSettings, periods: Periods) -> pl.DataFrame:
    """Per series of `data` (cut at its `as_of`): history length, CV, seasonality strength, promotion share
    and uplift, zero share."""
    as_of = data.known_at()
    hist = history(data)
    year = hist.filter(pl.col("ds") > as_of - timedelta(days=365))
    if data.promotions is not None and not data.promotions.is_empty() and not year.is_empty():
        days = year.select("ds").unique().with_columns(periods.first_day(pl.col("ds")).alias("first"))
        days = days.with_columns(
            date=pl.date_ranges("first", pl.col("first") + pl.duration(days=periods.cadence.days - 1))
        ).explode("date")
        days = days.select("ds", "date", cutoff=pl.col("first") - pl.duration(days=1))
        known = match_scope(promotions_known(data.promotions, days), series_attributes(data, settings), settings)
        on_promo = (
            known.join(days.select("date", "ds"), on="date")
            .select("unique_id", "ds")
            .unique()
            .with_columns(on_promo=pl.lit(True))
        )
        year = year.join(on_promo, on=["unique_id", "ds"], how="left").with_columns(pl.col("on_promo").fill_null(False))
    else:
        year = year.with_columns(on_promo=pl.lit(False))
    calendar = [pl.col("ds").dt.month().alias("month")]
    if periods.cadence.days == 1:
        calendar.append(pl.col("ds").dt.weekday().alias("dow"))
    year = year.with_columns(calendar)
    effects = [
        pl.col("y").mean().over("unique_id", key) - pl.col("y").mean().over("unique_id")
        for key in ("month", "dow")
        if key in year.columns
    ]
    regular = year.filter(~pl.col("on_promo")).with_columns(
        residual=pl.col("y") - pl.col("y").mean().over("unique_id") - pl.sum_horizontal(effects)
    )
    strength = regular.group_by("unique_id").agg(
        seasonality_strength=(1 - pl.col("residual").var() / pl.col("y").var()).fill_nan(0.0).clip(0, 1),
        cv=(pl.col("y").std() / pl.col("y").mean()).fill_nan(0.0),
    )
    promo = year.group_by("unique_id").agg(
        promo_share=pl.col("on_promo").mean(),
        promo_uplift=pl.col("y").filter(pl.col("on_promo")).mean() / pl.col("y").filter(~pl.col("on_promo")).mean(),
        zero_share=(pl.col("y") == 0).mean(),
    )
    first = hist.group_by("unique_id", "store_id", "sku_id").agg(first_sale=pl.col("ds").filter(pl.col("y") > 0).min())
    return (
        first.with_columns(
            history_periods=((pl.lit(as_of) - pl.col("first_sale")).dt.total_days() // periods.cadence.days + 1).cast(
                pl.Int64
            )
        )
        .join(strength, on="unique_id", how="left")
        .join(promo, on="unique_id", how="left")
        .with_columns(
            pl.col("promo_uplift").fill_null(1.0).fill_nan(1.0),
            pl.col("promo_share", "seasonality_strength", "cv").fill_null(0.0),
            pl.col("zero_share").fill_null(1.0),
        )
    )


def assign_segments(stats: pl.DataFrame, settings: ForecastSettings, periods: Periods) -> pl.DataFrame:
    rules = settings.segmentation
    new_periods = settings.days(rules.new_max_history) // periods.cadence.days
    segment = (
        pl.when(pl.col("history_periods").is_null() | (pl.col("history_periods") < new_periods))
        .then(pl.lit("new"))
        .when((pl.col("promo_share") >= rules.promo_min_share) & (pl.col("promo_uplift") >= rules.promo_min_uplift))
        .then(pl.lit("promo"))
        .when((pl.col("seasonality_strength") >= rules.seasonal_min_strength) | (pl.col("cv") > rules.stable_max_cv))
        .then(pl.lit("seasonal"))
        .otherwise(pl.lit("stable"))
    )
    return stats.with_columns(segment=segment)


def segment_series(known: CaseData, settings: ForecastSettings, periods: Periods) -> pl.DataFrame:
    """The segment of every series with sales up to the data's `as_of`, and the statistics behind it."""
    stats = assign_segments(series_statistics(known, settings, periods), settings, periods)
    return stats.with_columns(as_of=pl.lit(known.known_at())).select("unique_id", *SEGMENT_COLUMNS).sort("unique_id")
