"""Backtest against the seed's targets and the manual baseline, order simulation and ROI,
and monitoring of the nightly forecasts on matured actuals."""


import dagster as dg
import polars as pl

from assets.common import OWNERS, markdown_table, png_markdown
from assets.forecast.forecasts import STORE_FORECASTS_KEY
from assets.forecast.io import all_forecasts, all_sales, master_tables, store_data
from assets.forecast.models import SEGMENTS_KEY, SALES_KEY
from assets.forecast.partitions import store_partitions
from lakehouse.forecast.config import CASE, SEGMENTS, ForecastSettings, WorldConfig
from lakehouse.forecast.evaluation import accuracy_report, financial_impact, matured_accuracy, plot_accuracy, run_backtest, simulate_orders
from resources import LakehouseResource

BACKTEST_KEY = dg.AssetKey([CASE, "backtest"])
IMPACT_KEY = dg.AssetKey([CASE, "financial_impact"])
ACCURACY_KEY = dg.AssetKey([CASE, "live_accuracy"])


@dg.asset(
    key=BACKTEST_KEY,
    deps=[SALES_KEY, SEGMENTS_KEY],
    group_name=CASE,
    kinds={"statsforecast", "mlforecast", "matplotlib"},
    owners=OWNERS[CASE],
    description=(
        "Rolling-origin backtest: at each weekly origin every model is refitted on what was known then and forecasts "
        "D+1..D+14; MAPE at D+7 (days with sales > 0) and WAPE per segment against the seed's targets and the "
        "seasonal-naive baseline standing for the manual forecasters (seed: 28 %)."
    ),
)
def forecast_backtest(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    settings = ForecastSettings.from_env()
    freq = WorldConfig.from_env().frequency
    tables = master_tables(lakehouse)
    stores = [store_data(lakehouse, s, tables) for s in store_partitions.get_partition_keys()]
    segments = pl.concat([lakehouse.lake.read(CASE, "segments", ("store", s.store_id)) for s in stores])
    last_day = max(s.sales["date"].max() for s in stores)
    results = run_backtest(stores, segments, last_day, freq, settings, log=context.log.info)
    lakehouse.lake.write(results, CASE, "backtest_forecasts")
    report = accuracy_report(results, freq, settings)
    lakehouse.lake.write(report, CASE, "backtest")
    chart = plot_accuracy(report, lakehouse.paths.reports / "forecast_backtest.png")
    overall = report.filter(pl.col("segment") == "all").row(0, named=True)
    return dg.MaterializeResult(
        metadata={
            "origins": ", ".join(str(d) for d in results["origin"].unique().sort().to_list()),
            "series": results.select("store_id", "sku_id").n_unique(),
            "mape_d7": overall["mape"],
            "wape_d7": overall["wape"],
            "baseline_mape_d7": overall["baseline_mape"],
            **{f"mape_d7_{r['segment']}": r["mape"] for r in report.iter_rows(named=True) if r["segment"] in SEGMENTS},
            "seed": f"manual {settings.manual_mape:.0%} -> ML {settings.seed_model_mape:.0%}",
            "report": dg.MetadataValue.md(markdown_table(report)),
            "chart": png_markdown(chart, "MAPE at D+7 per segment"),
        }
    )


@dg.asset(
    key=IMPACT_KEY,
    deps=[BACKTEST_KEY],
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    description=(
        "Order simulation on the backtest (order-up-to on the forecasts vs on the seasonal-naive baseline): overstock and "
        "stockout as % of revenue, annual savings and ROI on the seed's 380,000 EUR investment."
    ),
)
def forecast_financial_impact(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    settings = ForecastSettings.from_env()
    results = lakehouse.lake.read(CASE, "backtest_forecasts")
    days = 7
    ours = simulate_orders(results, "yhat", days, settings.order_safety_factor)
    baseline = simulate_orders(results, "yhat_naive", days, settings.order_safety_factor)
    impact = financial_impact(ours, baseline, settings)
    table = pl.DataFrame(
        {
            "measure": ["overstock % of revenue", "stockout % of revenue"],
            "baseline (manual)": [baseline["overstock_pct"], baseline["stockout_pct"]],
            "models": [ours["overstock_pct"], ours["stockout_pct"]],
            "seed before": [settings.seed_overstock[0], settings.seed_stockout[0]],
            "seed after": [settings.seed_overstock[1], settings.seed_stockout[1]],
        }
    )
    money = pl.DataFrame(
        {
            "item": ["chain revenue (seed-implied)", "overstock saving", "recovered margin", "annual savings", "investment", "ROI year 1 (savings / investment)"],
            "ours": [impact["annual_revenue_eur"], impact["overstock_saving_eur"], impact["recovered_margin_eur"], impact["annual_savings_eur"], impact["investment_eur"], impact["roi_year1"]],
            "seed": [impact["annual_revenue_eur"], None, None, settings.seed_annual_savings_eur, settings.investment_eur, settings.seed_roi],
        }
    )
    lakehouse.lake.write(table, CASE, "order_simulation")
    return dg.MaterializeResult(
        metadata={
            "overstock_pct_model": ours["overstock_pct"],
            "overstock_pct_baseline": baseline["overstock_pct"],
            "stockout_pct_model": ours["stockout_pct"],
            "stockout_pct_baseline": baseline["stockout_pct"],
            "annual_savings_eur": impact["annual_savings_eur"],
            "roi_year1": impact["roi_year1"],
            "orders": dg.MetadataValue.md(markdown_table(table)),
            "impact": dg.MetadataValue.md(markdown_table(money, "{:,.2f}")),
        }
    )


class MonitoringConfig(dg.Config):
    drift_margin: float | None = None  # WARN above target + margin; default from the settings


@dg.asset(
    key=ACCURACY_KEY,
    deps=[STORE_FORECASTS_KEY, SALES_KEY],
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    description="D+7 MAPE per segment of the stored nightly forecasts whose actuals have matured, origin by origin.",
    check_specs=[dg.AssetCheckSpec("mape_drift", asset=ACCURACY_KEY, description="Latest matured D+7 MAPE of each segment within target + margin (WARN), target + 2 margins (ERROR).")],
)
def forecast_live_accuracy(config: MonitoringConfig, lakehouse: LakehouseResource):
    settings = ForecastSettings.from_env()
    freq = WorldConfig.from_env().frequency
    sales = all_sales(lakehouse).select("store_id", "sku_id", pl.col("date").alias("ds"), pl.col("units").cast(pl.Float64).alias("actual")).collect()
    last_day = sales["ds"].max()
    accuracy = matured_accuracy(all_forecasts(lakehouse), sales, last_day, freq.eval_step)
    lakehouse.lake.write(accuracy, CASE, "live_accuracy")
    yield dg.MaterializeResult(metadata={"dagster/row_count": accuracy.height, "last_actual_day": str(last_day), "by_origin": dg.MetadataValue.md(markdown_table(accuracy))})
    yield drift_check(accuracy, settings, config.drift_margin)


def drift_check(accuracy: pl.DataFrame, settings: ForecastSettings, margin: float | None = None) -> dg.AssetCheckResult:
    margin = settings.drift_margin if margin is None else margin
    error_margin = max(settings.drift_error_margin, 2 * margin)
    if accuracy.is_empty():
        return dg.AssetCheckResult(passed=True, description="no matured forecasts yet", metadata={"value": None, "threshold": f"target + {margin:.0%}"})
    latest = accuracy.filter(pl.col("origin") == pl.col("origin").max())
    rows = latest.with_columns(target=pl.col("segment").replace_strict(settings.mape_targets, default=None)).drop_nulls("target")
    excess = rows.with_columns(excess=pl.col("mape") - pl.col("target")).sort("excess", descending=True)
    worst = excess.row(0, named=True)
    severity = dg.AssetCheckSeverity.ERROR if worst["excess"] > error_margin else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=bool(worst["excess"] <= margin),
        severity=severity,
        description=f"origin {worst['origin']}: worst segment {worst['segment']} D+7 MAPE {worst['mape']:.1%} vs target {worst['target']:.0%}",
        metadata={
            "value": worst["mape"],
            "threshold": f"target {worst['target']:.0%} + {margin:.0%} (ERROR beyond + {error_margin:.0%})",
            "segment": worst["segment"],
            "origin": str(worst["origin"]),
            "per_segment": dg.MetadataValue.md(markdown_table(excess.select("segment", "mape", "target", "excess"))),
        },
    )


