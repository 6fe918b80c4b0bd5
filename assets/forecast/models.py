"""Weekly: the refit (model selection on the validation window, fit, MLflow challenger), the backtest
on the test window with its blocking gate, and promotion to champion."""

from datetime import UTC, date, datetime

import dagster as dg
import polars as pl

from assets.common import OWNERS, REPORT, champion_asset, gate_check_result, rate, table
from assets.forecast.metadata import percent_table
from assets.forecast.raw import MASTER_KEYS, SALES_KEY
from lakehouse.common.display import bar_chart, pct
from lakehouse.forecast import pipeline
from lakehouse.forecast.evaluation import ROUTED, SEASONAL_NAIVE, plot_accuracy
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
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(n, description=d) for n, d in SEGMENT_COLUMNS.items()]
        )
    },
)
def forecast_model(
    context: dg.AssetExecutionContext, config: RefitConfig, lakehouse: LakehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    settings = ForecastSettings()
    data = pipeline.read_case_data(lakehouse.lake)
    as_of = date.fromisoformat(config.as_of) if config.as_of else None
    refit = pipeline.refit(
        data,
        settings,
        mlflow.registry(lakehouse),
        f"forecast-refit-{datetime.now(UTC):%Y%m%d-%H%M%S}",
        as_of,
        log=context.log.info,
    )
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
            "routing": table(routing_table(refit.fitted)),
            "selection_on_validation": percent_table(refit.selection, "wape")
            if refit.selection.height
            else "off (`models.selection: seed`): the seed's models",
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
    tags=REPORT,
    check_specs=[
        dg.AssetCheckSpec(
            "challenger_gate",
            asset=BACKTEST_KEY,
            blocking=True,
            description="Challenger WAPE at most the champion's x (1 + gate.max_wape_increase) and below the seasonal naive's, on the same rows.",
        )
    ],
)
def forecast_backtest(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource):
    settings = ForecastSettings()
    registry = mlflow.registry(lakehouse)
    result = pipeline.backtest(pipeline.read_case_data(lakehouse.lake), settings, registry, log=context.log.info)
    pipeline.write_backtest(lakehouse.lake, result)
    cadence = settings.cadence
    step = settings.eval_step
    label = cadence.step_label(step)
    at = result.report.filter(pl.col("step") == step)
    routed = {r["segment"]: r for r in at.filter(pl.col("model") == ROUTED).iter_rows(named=True)}
    naive = at.filter((pl.col("model") == SEASONAL_NAIVE) & (pl.col("segment") == "all")).row(0, named=True)
    key = cadence.step_key(step)
    segments = [(s, r["mape"]) for s, r in routed.items() if s != "all" and r["mape"] is not None]
    chart = plot_accuracy(result.report, settings, lakehouse.paths.reports / "forecast_backtest.png")
    yield dg.MaterializeResult(
        metadata={
            "window": result.info["window"],
            "origins": result.info["origins"],
            "series": result.info["series"],
            "challenger_version": result.challenger,
            "champion_version": result.champion or "none",
            f"wape_{key}": rate(routed["all"]["wape"]),
            f"seasonal_naive_wape_{key}": rate(naive["wape"]),
            **{f"mape_{key}_{s}": rate(r["mape"]) for s, r in routed.items()},
            "reading": f"{label}: the models' WAPE {pct(routed['all']['wape'])} against {pct(naive['wape'])} for the seasonal naive (the manual forecasters' stand-in); bars: MAPE per segment, ticks: the seed's targets",
            f"mape_{key}_per_segment": dg.MetadataValue.md(
                bar_chart(
                    f"MAPE at {label}",
                    segments,
                    label=pct,
                    marks={s: t for s, t in settings.targets.mape.items() if s in dict(segments)},
                )
            ),
            f"accuracy_at_{key}": percent_table(
                at.select("segment", "model", "wape", "mape", "mase", "rows"), "wape", "mape"
            ),
            "levels": percent_table(result.levels, "wape", "mape"),
            "gate_rows": percent_table(result.comparison, "wape", "mape"),
            "per_step_chart": dg.MetadataValue.path(str(chart)),
        }
    )
    yield gate_check_result(registry, pipeline.gate(result, settings), BACKTEST_KEY)


forecast_champion = champion_asset(
    CASE,
    BACKTEST_KEY,
    lambda settings: settings.model_name,
    ForecastSettings,
    description="Moves the MLflow alias `champion` to the challenger whose backtest gate passed; the nightly path loads the champion.",
)
