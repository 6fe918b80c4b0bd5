"""Rolling-origin backtest, seasonal-naive baseline, order simulation and financial impact.

MAPE is measured at D+7 (the seed's horizon) on days with sales > 0; WAPE alongside. The
seasonal-naive forecast (same weekday last week) stands for the manual forecasters.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from lakehouse.forecast.config import SEGMENTS, ForecastSettings, Frequency
from lakehouse.forecast.features import StoreData, history
from lakehouse.forecast.models import fit_global_models, fit_stat_models, forecast_store, stat_windows, training_frame


def backtest_origins(last_day: date, freq: Frequency, count: int) -> list[date]:
    """Weekly origins, the latest one with its whole horizon observed by `last_day`."""
    latest = last_day - timedelta(days=freq.horizon * freq.days)
    return [latest - timedelta(weeks=k) for k in reversed(range(count))]


def sample_series(segments: pl.DataFrame, per_segment: int, seed: int = 7) -> pl.DataFrame:
    return pl.concat(
        [part.sample(min(per_segment, part.height), seed=seed) for _, part in segments.group_by("segment", maintain_order=True)]
    ).sort("store_id", "sku_id")


def seasonal_naive(hist: pl.DataFrame, origin: date, freq: Frequency, store_id: str) -> pl.DataFrame:
    """Same weekday last week (same week last year for weekly data), repeated over the horizon."""
    season = freq.season
    last = hist.filter(pl.col("ds") <= origin).sort("ds").group_by("unique_id", maintain_order=True).tail(season)
    rows = last.with_columns(position=pl.int_range(pl.len()).over("unique_id"), n=pl.len().over("unique_id")).filter(pl.col("n") == season)
    steps = pl.DataFrame({"step": list(range(1, freq.horizon + 1))}, schema={"step": pl.Int32})
    return (
        rows.join(steps, how="cross")
        .filter(pl.col("position") == (pl.col("step") - 1) % season)
        .select(store_id=pl.lit(store_id), sku_id=pl.col("sku_id"), step=pl.col("step"), yhat_naive=pl.col("y"))
    )


def run_backtest(
    stores: list[StoreData],
    segments: pl.DataFrame,
    last_day: date,
    freq: Frequency,
    settings: ForecastSettings,
    log=lambda *_: None,
) -> pl.DataFrame:
    """For each origin: refit every model on what was known then, forecast, join actuals and the baseline."""
    picked = sample_series(segments, settings.backtest_max_series_per_segment)
    results = []
    for origin in backtest_origins(last_day, freq, settings.backtest_origins):
        log(f"backtest origin {origin}")
        known = [d.until(origin) for d in stores]
        seg_by_store = {sid: part for (sid,), part in segments.group_by(["store_id"])}
        frames = [training_frame(d, origin, freq, settings, seg_by_store[d.store_id]) for d in known if d.store_id in seg_by_store]
        global_models = fit_global_models([f for f in frames if f.height], origin, freq, settings)
        for data in stores:
            mine = picked.filter(pl.col("store_id") == data.store_id)
            if mine.is_empty():
                continue
            sample = StoreData(data.store, data.products.filter(pl.col("sku_id").is_in(mine["sku_id"].implode())), data.sales.filter(pl.col("sku_id").is_in(mine["sku_id"].implode())), data.promotions, data.weather_forecasts, data.events)
            seg = seg_by_store[data.store_id].filter(pl.col("sku_id").is_in(mine["sku_id"].implode()))
            hist_known = history(sample.until(origin), freq)
            fitted = fit_stat_models(stat_windows(hist_known, seg, freq), freq, settings)
            forecast = forecast_store(sample, seg, fitted, global_models, origin, freq, settings)
            actual = history(sample, freq).filter(pl.col("ds") > origin).select("sku_id", "ds", pl.col("y").alias("actual"))
            naive = seasonal_naive(hist_known, origin, freq, data.store_id)
            results.append(
                forecast.join(actual, on=["sku_id", "ds"], how="left").join(naive, on=["store_id", "sku_id", "step"], how="left").with_columns(pl.col("actual").fill_null(0.0))
            )
    return pl.concat(results).join(stores_products(stores), on="sku_id", how="left")


def stores_products(stores: list[StoreData]) -> pl.DataFrame:
    return stores[0].products.select("sku_id", "perishable", "price_eur")


def accuracy(results: pl.DataFrame, step: int, forecast_column: str = "yhat") -> pl.DataFrame:
    """MAPE (days with sales > 0) and WAPE per segment at one step, plus the whole."""
    at = results.filter(pl.col("step") == step)
    err = (pl.col(forecast_column) - pl.col("actual")).abs()
    agg = [
        (err / pl.col("actual")).filter(pl.col("actual") > 0).mean().alias("mape"),
        (err.sum() / pl.col("actual").sum()).alias("wape"),
        pl.len().alias("forecasts"),
    ]
    per = at.group_by("segment").agg(agg)
    total = at.select(agg).with_columns(segment=pl.lit("all"))
    order = {s: i for i, s in enumerate((*SEGMENTS, "all"))}
    return pl.concat([per, total.select(per.columns)]).sort(pl.col("segment").replace_strict(order, default=99))


def accuracy_report(results: pl.DataFrame, freq: Frequency, settings: ForecastSettings) -> pl.DataFrame:
    ours = accuracy(results, freq.eval_step)
    naive = accuracy(results.drop_nulls("yhat_naive"), freq.eval_step, "yhat_naive").select("segment", pl.col("mape").alias("baseline_mape"), pl.col("wape").alias("baseline_wape"))
    targets = pl.DataFrame({"segment": list(settings.mape_targets), "target": list(settings.mape_targets.values())})
    return ours.join(naive, on="segment", how="left").join(targets, on="segment", how="left").with_columns(
        meets_target=pl.when(pl.col("target").is_null()).then(None).otherwise(pl.col("mape") < pl.col("target"))
    )


# --------------------------------------------------------------------------- orders


def simulate_orders(results: pl.DataFrame, forecast_column: str, days: int, safety: float) -> dict:
    """Order-up-to on a forecast: each day stock is raised to forecast x (1 + safety).

    Perishable units left at the end of a day are wasted; other leftovers stay on the shelf
    and what remains after the window is excess stock. Overstock % = (waste + excess) and
    stockout % = lost sales, both valued at shelf price over the demand's value.
    """
    df = results.filter(pl.col("step") <= days).drop_nulls(forecast_column).sort("store_id", "sku_id", "origin", "step")
    waste = lost = demand_value = 0.0
    for (_, _, _), part in df.group_by(["store_id", "sku_id", "origin"], maintain_order=True):
        price = part["price_eur"][0]
        perishable = part["perishable"][0]
        on_hand = 0.0
        for f, y in zip(part[forecast_column].to_list(), part["actual"].to_list()):
            target = math.ceil(max(f, 0.0) * (1 + safety))
            available = max(on_hand, target)
            sold = min(y, available)
            lost += (y - sold) * price
            left = available - sold
            if perishable:
                waste += left * price
                on_hand = 0.0
            else:
                on_hand = left
            demand_value += y * price
        waste += on_hand * price
    demand_value = max(demand_value, 1e-9)
    return {"overstock_pct": waste / demand_value, "stockout_pct": lost / demand_value, "demand_value_eur": demand_value}


def seed_implied_revenue(settings: ForecastSettings) -> float:
    """The chain revenue at which the seed's own improvements give its 2.3 M EUR a year.

    Waste is valued at cost (1 - margin), recovered sales at the margin; the seed gives no
    revenue figure, so our measured improvements are valued on this same base.
    """
    (over_before, over_after), (out_before, out_after) = settings.seed_overstock, settings.seed_stockout
    per_revenue = (over_before - over_after) * (1 - settings.gross_margin) + (out_before - out_after) * settings.gross_margin
    return settings.seed_annual_savings_eur / per_revenue


def financial_impact(model: dict, baseline: dict, settings: ForecastSettings) -> dict:
    """Annual savings from our measured improvements over the baseline, ROI = savings / investment."""
    revenue = seed_implied_revenue(settings)
    overstock_saving = (baseline["overstock_pct"] - model["overstock_pct"]) * revenue * (1 - settings.gross_margin)
    recovered_margin = (baseline["stockout_pct"] - model["stockout_pct"]) * revenue * settings.gross_margin
    savings = overstock_saving + recovered_margin
    return {
        "annual_revenue_eur": revenue,
        "overstock_saving_eur": overstock_saving,
        "recovered_margin_eur": recovered_margin,
        "annual_savings_eur": savings,
        "investment_eur": settings.investment_eur,
        "roi_year1": savings / settings.investment_eur,
    }


def plot_accuracy(report: pl.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.filter(pl.col("segment") != "all")
    x = np.arange(rows.height)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(x - 0.2, rows["mape"].to_numpy() * 100, 0.4, label="models")
    ax.bar(x + 0.2, rows["baseline_mape"].to_numpy() * 100, 0.4, label="seasonal naive (manual)")
    ax.scatter(x, rows["target"].to_numpy() * 100, color="black", marker="_", s=600, label="seed target")
    ax.set_xticks(x, rows["segment"].to_list())
    ax.set_ylabel("MAPE at D+7 (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def matured_accuracy(forecasts: pl.DataFrame, actuals: pl.DataFrame, last_day: date, step: int) -> pl.DataFrame:
    """D+step MAPE per origin and segment of stored nightly forecasts whose actuals are in."""
    df = forecasts.filter((pl.col("step") == step) & (pl.col("ds") <= last_day)).join(actuals, on=["store_id", "sku_id", "ds"], how="left").with_columns(pl.col("actual").fill_null(0.0))
    if df.is_empty():
        return pl.DataFrame(schema={"origin": pl.Date, "segment": pl.String, "mape": pl.Float64, "wape": pl.Float64, "forecasts": pl.UInt32})
    err = (pl.col("yhat") - pl.col("actual")).abs()
    return df.group_by("origin", "segment").agg(
        (err / pl.col("actual")).filter(pl.col("actual") > 0).mean().alias("mape"),
        (err.sum() / pl.col("actual").sum()).alias("wape"),
        pl.len().alias("forecasts"),
    ).sort("origin", "segment")
