"""Monitoring of the nightly forecasts on matured actuals, and the financial report of the backtest."""

import dagster as dg

from assets.common import OWNERS, REPORT, check_result, money, number, rate, table
from assets.forecast.forecasts import STORE_FORECASTS_KEY
from assets.forecast.models import BACKTEST_KEY
from assets.forecast.raw import SALES_KEY
from lakehouse.common.display import bar_chart, pct
from lakehouse.forecast import pipeline
from lakehouse.forecast.settings import CASE, ForecastSettings
from resources import LakehouseResource, SourcesResource

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
    description=(
        "MAPE and WAPE at the evaluation step (D+7 daily, W+1 weekly) per segment of the stored nightly forecasts "
        "whose actuals are in, origin by origin, at the data's frequency."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "mape_drift",
            asset=ACCURACY_KEY,
            description=(
                "Latest matured origin: each segment's MAPE within its reference (max of the seed's target and its "
                "backtest MAPE) + margin (WARN), + the error margin (ERROR), beyond noise: the MAPE's one-sided lower "
                "bound over the origin's forecasts (`targets.drift_alpha`) must cross them."
            ),
        )
    ],
)
def forecast_live_accuracy(config: MonitoringConfig, lakehouse: LakehouseResource, sources: SourcesResource):
    settings = sources.settings(ForecastSettings)
    lake = lakehouse.lake
    backtest = lake.read(CASE, "backtest") if lake.exists(CASE, "backtest") else None
    data = pipeline.read_case_data(lake)
    accuracy, outcome = pipeline.live_accuracy(
        pipeline.all_store_forecasts(lake), data.sales, backtest, settings, config.drift_margin
    )
    lake.write(accuracy, CASE, "live_accuracy")
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": accuracy.height,
            "last_actual": str(data.last_day),
            "step": settings.cadence.step_label(settings.eval_step),
            "versions": _versions(accuracy),
            "by_origin": table(accuracy, percent=("mape", "wape", "mape_se"))
            if accuracy.height
            else "no matured forecast yet",
        }
    )
    yield check_result(outcome, ACCURACY_KEY)


def _versions(accuracy) -> str:
    """Which versions' forecasts were measured, and which of them in shadow (not promoted)."""
    if "model_version" not in accuracy.columns or accuracy.is_empty():
        return "none yet"
    rows = accuracy.select("model_version", "shadow").unique().sort("model_version").iter_rows()
    return ", ".join(f"v{v}" + (" (shadow: not promoted)" if shadow else "") for v, shadow in rows)


@dg.asset(
    key=IMPACT_KEY,
    deps=[BACKTEST_KEY],
    tags=REPORT,
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    description=(
        "Order simulation on the backtest (order-up-to on the models' forecasts vs on the seasonal naive, standing "
        "for the manual forecasters): overstock and stockouts as % of demand value, annual savings and ROI in the "
        "economics' currency; the report says whether the economics are the seed's defaults."
    ),
)
def forecast_financial_impact(lakehouse: LakehouseResource, sources: SourcesResource) -> dg.MaterializeResult:
    settings = sources.settings(ForecastSettings)
    lake = lakehouse.lake
    impact = pipeline.financial_report(lake.read(CASE, "backtest_forecasts"), lake.read(CASE, "products"), settings)
    lake.write_many({(CASE, "order_simulation", None): impact.orders, (CASE, "financial_impact", None): impact.money})
    currency = settings.economics.currency
    f = impact.figures
    ours, baseline = f["model"], f["baseline"]
    return dg.MaterializeResult(
        metadata={
            "overstock_models": rate(ours["overstock_pct"]),
            "overstock_seasonal_naive": rate(baseline["overstock_pct"]),
            "stockouts_models": rate(ours["stockout_pct"]),
            "stockouts_seasonal_naive": rate(baseline["stockout_pct"]),
            "annual_savings": money(f["annual_savings"], currency),
            "roi_year1": number(f["roi_year1"], 2),
            "economics": impact.note,
            "reading": (
                "order-up-to on the models' forecasts against the seasonal naive's: overstock "
                f"{pct(baseline['overstock_pct'])} -> {pct(ours['overstock_pct'])}, stockouts "
                f"{pct(baseline['stockout_pct'])} -> {pct(ours['stockout_pct'])} of demand value"
            ),
            "chart": dg.MetadataValue.md(
                bar_chart(
                    "overstock and stockouts, % of demand value",
                    [
                        ("overstock naive", baseline["overstock_pct"]),
                        ("overstock models", ours["overstock_pct"]),
                        ("stockouts naive", baseline["stockout_pct"]),
                        ("stockouts models", ours["stockout_pct"]),
                    ],
                    label=pct,
                )
            ),
            "orders": table(impact.orders, percent=tuple(c for c in impact.orders.columns if c != "measure")),
            "money": table(impact.money, "{:,.2f}"),
        }
    )
