"""Monitoring of the nightly forecasts on matured actuals, and the financial report of the backtest."""

import dagster as dg
import polars as pl

from assets.common import OWNERS, check_result, markdown_table
from assets.forecast.forecasts import STORE_FORECASTS_KEY
from assets.forecast.models import BACKTEST_KEY
from assets.forecast.raw import SALES_KEY
from lakehouse.forecast import pipeline
from lakehouse.forecast.settings import CASE, ForecastSettings
from resources import LakehouseResource

ACCURACY_KEY = dg.AssetKey([CASE, "live_accuracy"])
IMPACT_KEY = dg.AssetKey([CASE, "financial_impact"])


class MonitoringConfig(dg.Config):
    drift_margin: float | None = None  # WARN above reference + margin; default `targets.drift_margin`


@dg.asset(
    key=ACCURACY_KEY,
    deps=[STORE_FORECASTS_KEY, SALES_KEY],
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    description="MAPE and WAPE at the evaluation step (D+7 daily, W+1 weekly) per segment of the stored nightly forecasts whose actuals are in, origin by origin, at the data's frequency.",
    check_specs=[dg.AssetCheckSpec("mape_drift", asset=ACCURACY_KEY, description="Latest matured origin: each segment's MAPE within its reference (max of the seed's target and its backtest MAPE) + margin (WARN), + the error margin (ERROR).")],
)
def forecast_live_accuracy(config: MonitoringConfig, lakehouse: LakehouseResource):
    settings = ForecastSettings()
    lake = lakehouse.lake
    backtest = lake.read(CASE, "backtest") if lake.exists(CASE, "backtest") else None
    data = pipeline.read_case_data(lake)
    table, outcome = pipeline.live_accuracy(pipeline.all_store_forecasts(lake), data.sales, backtest, settings, config.drift_margin)
    lake.write(table, CASE, "live_accuracy")
    shown = table.with_columns(pl.col("mape", "wape") * 100)
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.height,
            "last_actual": str(data.last_day),
            "step": settings.cadence.step_label(settings.eval_step),
            "by_origin_pct": dg.MetadataValue.md(markdown_table(shown, "{:.1f}") if table.height else "no matured forecast yet"),
        }
    )
    yield check_result(outcome, ACCURACY_KEY)


@dg.asset(
    key=IMPACT_KEY,
    deps=[BACKTEST_KEY],
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    description=(
        "Order simulation on the backtest (order-up-to on the models' forecasts vs on the seasonal naive, standing for "
        "the manual forecasters): overstock and stockouts as % of demand value, annual savings and ROI in the economics' "
        "currency; the report says whether the economics are the seed's defaults."
    ),
)
def forecast_financial_impact(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    settings = ForecastSettings()
    lake = lakehouse.lake
    impact = pipeline.financial_report(lake.read(CASE, "backtest_forecasts"), lake.read(CASE, "products"), settings)
    lake.write_many({(CASE, "order_simulation", None): impact.orders, (CASE, "financial_impact", None): impact.money})
    currency = settings.economics.currency
    f = impact.figures
    return dg.MaterializeResult(
        metadata={
            "overstock_pct_models": dg.MetadataValue.float(round(100 * f["model"]["overstock_pct"], 2)),
            "overstock_pct_seasonal_naive": dg.MetadataValue.float(round(100 * f["baseline"]["overstock_pct"], 2)),
            "stockout_pct_models": dg.MetadataValue.float(round(100 * f["model"]["stockout_pct"], 2)),
            "stockout_pct_seasonal_naive": dg.MetadataValue.float(round(100 * f["baseline"]["stockout_pct"], 2)),
            f"annual_savings_{currency.lower()}": dg.MetadataValue.float(round(f["annual_savings"], 0)),
            "roi_year1": dg.MetadataValue.float(round(f["roi_year1"], 2)),
            "economics": impact.note,
            "orders_pct": dg.MetadataValue.md(markdown_table(impact.orders.with_columns(pl.exclude("measure") * 100), "{:.2f}")),
            f"money_{currency.lower()}": dg.MetadataValue.md(markdown_table(impact.money, "{:,.2f}")),
        }
    )
