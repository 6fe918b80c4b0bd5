"""Weekly: the refit (model selection on the validation window, fit, MLflow challenger), the backtest
on the test window with its blocking gate, and promotion to champion."""

from datetime import date, datetime, timezone

import dagster as dg
import polars as pl

from assets.common import OWNERS, champion_asset, gate_result, markdown_table, png_markdown
from assets.forecast.raw import MASTER_KEYS, SALES_KEY
from lakehouse.forecast import pipeline
from lakehouse.forecast.evaluation import plot_accuracy
from lakehouse.forecast.lifecycle import routing_table
from lakehouse.forecast.segmentation import SEGMENT_COLUMNS
from lakehouse.forecast.settings import CASE, SEGMENTS, ForecastSettings
from resources import LakehouseResource, MlflowResource

MODEL_KEY = dg.AssetKey([CASE, "model"])
BACKTEST_KEY = dg.AssetKey([CASE, "backtest"])
CHAMPION_KEY = dg.AssetKey([CASE, "champion_model"])


class RefitConfig(dg.Config):
    as_of: str | None = None  # last day of history the refit may use (ISO date); default: the last day of data


@dg.asset(
    key=MODEL_KEY,
    deps=[SALES_KEY, *MASTER_KEYS],
    group_name=CASE,
    kinds={"statsforecast", "mlforecast", "lightgbm", "mlflow"},
    owners=OWNERS[CASE],
    description=(
        "Weekly refit: every store x SKU segmented (stable, seasonal, new, promo); each segment's model chosen among the "
        "seed's model and the global LightGBM on the validation window; AutoARIMA / MSTL fitted per series on a bounded "
        "window and LightGBM on every series; the fitted state logged to MLflow and registered as the `challenger`."
    ),
    metadata={"dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(n, description=d) for n, d in SEGMENT_COLUMNS.items()])},
)
def forecast_model(context: dg.AssetExecutionContext, config: RefitConfig, lakehouse: LakehouseResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    settings = ForecastSettings()
    data = pipeline.read_case_data(lakehouse.lake)
    as_of = date.fromisoformat(config.as_of) if config.as_of else None
    refit = pipeline.refit(data, settings, mlflow.registry(lakehouse), f"forecast-refit-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}", as_of, log=context.log.info)
    segments = refit.fitted.segments
    lakehouse.lake.write(segments, CASE, "segments")
    counts = pipeline.segment_counts(segments)
    return dg.MaterializeResult(
        metadata={
            "model_version": refit.version,
            "mlflow_run_id": refit.run_id,
            "as_of": str(refit.fitted.as_of),
            "frequency": refit.fitted.periods.alias,
            "series": segments.height,
            **{f"series_{s}": counts[s] for s in SEGMENTS},
            "train_rows": refit.fitted.train_rows,
            "routing": dg.MetadataValue.md(markdown_table(routing_table(refit.fitted))),
            "validation_wape": dg.MetadataValue.md(markdown_table(refit.selection.with_columns(pl.col("wape") * 100), "{:.1f}") if refit.selection.height else "selection off (`models.selection: seed`)"),
            "features": ", ".join(refit.fitted.dynamic) or "none",
        }
    )


@dg.asset(
    key=BACKTEST_KEY,
    deps=[MODEL_KEY],
    group_name=CASE,
    kinds={"statsforecast", "mlforecast", "matplotlib"},
    owners=OWNERS[CASE],
    description=(
        "Rolling-origin backtest on the test window: the challenger's configuration fitted at the window's first origin "
        "and forecasting every origin from that state, each candidate model, the seasonal naive and the champion's "
        "fitted state, all on the same rows; WAPE, MAPE (periods with sales) and MASE at every step and level."
    ),
    check_specs=[dg.AssetCheckSpec("challenger_gate", asset=BACKTEST_KEY, blocking=True, description="Challenger WAPE at most the champion's x (1 + gate.max_wape_increase) and below the seasonal naive's, on the same rows.")],
)
def forecast_backtest(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource):
    settings = ForecastSettings()
    registry = mlflow.registry(lakehouse)
    result = pipeline.backtest(pipeline.read_case_data(lakehouse.lake), settings, registry, log=context.log.info)
    pipeline.write_backtest(lakehouse.lake, result)
    cadence = settings.cadence
    step = settings.eval_step
    at = result.report.filter(pl.col("step") == step).with_columns(pl.col("wape", "mape") * 100)
    chart = plot_accuracy(result.report, settings, lakehouse.paths.reports / "forecast_backtest.png")
    routed = {r["segment"]: r for r in result.report.filter((pl.col("model") == "routed") & (pl.col("step") == step)).iter_rows(named=True)}
    naive = result.report.filter((pl.col("model") == "SeasonalNaive") & (pl.col("step") == step) & (pl.col("segment") == "all")).row(0, named=True)
    key = cadence.step_key(step)
    yield dg.MaterializeResult(
        metadata={
            "window": result.info["window"],
            "origins": result.info["origins"],
            "series": result.info["series"],
            "challenger_version": result.challenger,
            "champion_version": result.champion or "none",
            **_percentages({f"wape_{key}_pct": routed["all"]["wape"], f"seasonal_naive_wape_{key}_pct": naive["wape"], **{f"mape_{key}_{s}_pct": r["mape"] for s, r in routed.items()}}),
            "accuracy_at_step": dg.MetadataValue.md(f"{cadence.step_label(step)}, % (WAPE, MAPE) and MASE:\n\n" + markdown_table(at.select("segment", "model", "wape", "mape", "mase", "rows"), "{:.2f}")),
            "levels": dg.MetadataValue.md(markdown_table(result.levels.with_columns(pl.col("wape", "mape") * 100), "{:.2f}")),
            "chart": png_markdown(chart, f"WAPE per step and MAPE at {cadence.step_label(step)} per segment"),
        }
    )
    yield gate_result(registry, settings.model_name, result.challenger, pipeline.gate(result, settings), BACKTEST_KEY)


def _percentages(rates: dict[str, float | None]) -> dict[str, float]:
    """Rates as percentages rounded to 0.01 (a segment without scored rows has none)."""
    return {name: round(100 * rate, 2) for name, rate in rates.items() if rate is not None}


forecast_champion = champion_asset(
    CASE, BACKTEST_KEY, ForecastSettings.model_construct().model_name,
    description="Moves the MLflow alias `champion` to the challenger whose backtest gate passed; the nightly path loads the champion.",
)
