"""Weekly: the refit (model selection on the validation window, fit, MLflow challenger), the backtest
on the test window with its blocking gate, and promotion to champion. On demand: any registered
version evaluated on any window, without promotion."""

from datetime import UTC, date, datetime

import dagster as dg
import polars as pl

from assets.common import OWNERS, REPORT, champion_asset, gate_check_result, rate, table
from assets.forecast.raw import MASTER_KEYS, SALES_KEY
from lakehouse.common.display import bar_chart, pct
from lakehouse.common.settings import DateRange
from lakehouse.forecast import pipeline
from lakehouse.forecast.evaluation import ROUTED, SEASONAL_NAIVE, plot_accuracy
from lakehouse.forecast.lifecycle import record_reconciliation, routing_table
from lakehouse.forecast.segmentation import SEGMENT_COLUMNS
from lakehouse.forecast.settings import CASE, SEGMENTS, ForecastSettings
from resources import LakehouseResource, MlflowResource, SourcesResource

MODEL_KEY = dg.AssetKey([CASE, "model"])
BACKTEST_KEY = dg.AssetKey([CASE, "backtest"])
CHAMPION_KEY = dg.AssetKey([CASE, "champion_model"])
EVALUATION_KEY = dg.AssetKey([CASE, "model_evaluation"])


class RefitConfig(dg.Config):
    as_of: str | None = None  # last day of history the refit may use (ISO date); default: the last day of data


@dg.asset(
    key=MODEL_KEY,
    deps=[SALES_KEY, *MASTER_KEYS],
    group_name=CASE,
    kinds={"statsforecast", "mlforecast", "lightgbm", "mlflow"},
    owners=OWNERS[CASE],
    description=(
        "Weekly refit: every store x SKU segmented (stable, seasonal, new, promo); each segment's model chosen among "
        "the seed's model and the global LightGBM on the validation window; AutoARIMA / MSTL fitted per series on a "
        "bounded window and LightGBM on every series; the fitted state logged to MLflow and registered as the "
        "`challenger`."
    ),
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(n, description=d) for n, d in SEGMENT_COLUMNS.items()]
        )
    },
)
def forecast_model(
    context: dg.AssetExecutionContext,
    config: RefitConfig,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    sources: SourcesResource,
) -> dg.MaterializeResult:
    settings = sources.settings(ForecastSettings)
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
            "selection_on_validation": table(refit.selection, percent=("wape",))
            if refit.selection.height
            else "off (`models.selection: seed`): the seed's models",
            "features": ", ".join(refit.fitted.dynamic) or "none",
            "statistical_fits": table(refit.fitted.stat_fits)
            if refit.fitted.stat_fits is not None and refit.fitted.stat_fits.height
            else "no segment routed to a statistical model",
        }
    )


def _report_metadata(result: pipeline.Backtest, settings: ForecastSettings, chart_path) -> dict:
    """The backtest as people read it: the evaluation step's figures per segment and level, the chart."""
    cadence = settings.cadence
    step = settings.eval_step
    label = cadence.step_label(step)
    at = result.report.filter(pl.col("step") == step)
    routed = {r["segment"]: r for r in at.filter(pl.col("model") == ROUTED).iter_rows(named=True)}
    naive = at.filter((pl.col("model") == SEASONAL_NAIVE) & (pl.col("segment") == "all")).row(0, named=True)
    key = cadence.step_key(step)
    segments = [(s, r["mape"]) for s, r in routed.items() if s != "all" and r["mape"] is not None]
    chart = plot_accuracy(result.report, settings, chart_path)
    return {
        "window": result.info["window"],
        "origins": result.info["origins"],
        "series": result.info["series"],
        f"wape_{key}": rate(routed["all"]["wape"]),
        f"seasonal_naive_wape_{key}": rate(naive["wape"]),
        **{f"mape_{key}_{s}": rate(r["mape"]) for s, r in routed.items()},
        "reading": (
            f"{label}: the models' WAPE {pct(routed['all']['wape'])} against {pct(naive['wape'])} for the seasonal "
            "naive (the manual forecasters' stand-in); bars: MAPE per segment, ticks: the seed's targets"
        ),
        f"mape_{key}_per_segment": dg.MetadataValue.md(
            bar_chart(
                f"MAPE at {label}",
                segments,
                label=pct,
                marks={s: t for s, t in settings.targets.mape.items() if s in dict(segments)},
            )
        ),
        f"accuracy_at_{key}": table(
            at.select("segment", "model", "wape", "mape", "mase", "rows"), percent=("wape", "mape")
        ),
        "levels": table(result.levels, percent=("wape", "mape")),
        "gate_rows": table(result.comparison, percent=("wape", "mape")),
        "long_horizon": table(result.planning_report, percent=("wape", "mape")),
        "reconciliation": table(result.reconciliation, percent=("wape",)),
        **{f"reconciliation_{h}": m for h, m in result.info["reconciliation"].items()},
        "per_step_chart": dg.MetadataValue.path(str(chart)),
        "forecast_by": table(
            result.rows.group_by("segment", "model").agg(series=pl.col("unique_id").n_unique()).sort("segment", "model")
        ),
    }


def _verdict_metadata(result: pipeline.Backtest, verdict) -> dict:
    """Both models' figures on the same rows with the interval of the challenger's gain, and the verdict."""
    return {
        "challenger_version": result.challenger,
        "champion_version": result.champion or "none",
        "champion_basis": result.info.get("champion_basis", "no champion yet"),
        "verdict": verdict.summary(),
        "comparisons": table(verdict.comparisons_frame(), "{:,.4f}"),
    }


@dg.asset(
    key=BACKTEST_KEY,
    deps=[MODEL_KEY],
    group_name=CASE,
    kinds={"statsforecast", "mlforecast", "matplotlib"},
    owners=OWNERS[CASE],
    description=(
        "Rolling-origin backtest on the test window: the challenger's configuration fitted at the window's first "
        "origin and forecasting every origin from that state, each candidate model, the seasonal naive and the "
        "champion's configuration fitted at the same cut-off, all on the same rows (out of sample for every model); "
        "WAPE, MAPE (periods with sales) and MASE at every step and level; the long horizon from the first origin; "
        "each horizon's reconciliation method (bottom-up, top-down, MinTrace) chosen and recorded on the version."
    ),
    tags=REPORT,
    check_specs=[
        dg.AssetCheckSpec(
            "challenger_gate",
            asset=BACKTEST_KEY,
            blocking=True,
            description=(
                "Challenger WAPE not worse beyond noise (bootstrap over series, `gate.comparison`) than the champion's "
                "configuration refitted at the same cut-off (tolerance `gate.max_wape_increase` of its WAPE) and than "
                "the seasonal naive (`gate.beat_seasonal_naive`), on the same rows. A refusal is a WARN: the champion "
                "stays, the run stays green."
            ),
        )
    ],
)
def forecast_backtest(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource, sources: SourcesResource
):
    settings = sources.settings(ForecastSettings)
    registry = mlflow.registry(lakehouse)
    result = pipeline.backtest(pipeline.read_case_data(lakehouse.lake), settings, registry, log=context.log.info)
    pipeline.write_backtest(lakehouse.lake, result)
    record_reconciliation(registry, settings, result.challenger, result.info["reconciliation"])
    verdict = result.verdict(settings)
    (context.log.info if verdict.passed else context.log.warning)(f"gate: {verdict.summary()}")
    report = _report_metadata(result, settings, lakehouse.paths.reports / "forecast_backtest.png")
    yield dg.MaterializeResult(metadata={**report, **_verdict_metadata(result, verdict)})
    yield gate_check_result(registry, verdict, BACKTEST_KEY)


forecast_champion = champion_asset(
    CASE,
    BACKTEST_KEY,
    lambda settings: settings.model_name,
    ForecastSettings,
    description=(
        "Moves the MLflow alias `champion` to the challenger whose backtest gate passed (or keeps the champion and "
        "says why); `rollback_to` + `reason` move it back to an earlier version that passed. The nightly path loads "
        "the champion."
    ),
)


class EvaluationConfig(dg.Config):
    version: str | None = None  # the registered version to evaluate; default: the current challenger
    start: str | None = None  # first day of the scored window (ISO date); default: `evaluation.test`
    end: str | None = None  # last day of the scored window (ISO date); default: `evaluation.test`


@dg.asset(
    key=EVALUATION_KEY,
    deps=[SALES_KEY],
    group_name=CASE,
    kinds={"statsforecast", "mlforecast", "matplotlib"},
    owners=OWNERS[CASE],
    tags=REPORT,
    description=(
        "On demand: any registered version's configuration backtested on any window (run config `version`, `start`, "
        "`end`), like for like against the champion's configuration and the seasonal naive. The gate's verdict is "
        "shown and not recorded: nothing is promoted."
    ),
)
def forecast_model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    sources: SourcesResource,
) -> dg.MaterializeResult:
    settings = sources.settings(ForecastSettings)
    data = pipeline.read_case_data(lakehouse.lake)
    window = None
    if config.start or config.end:
        default = pipeline.windows(data, settings)["test"]
        start = date.fromisoformat(config.start) if config.start else default.start
        window = DateRange(start=start, end=date.fromisoformat(config.end) if config.end else default.end)
    result = pipeline.backtest(
        data, settings, mlflow.registry(lakehouse), version=config.version, window=window, log=context.log.info
    )
    pipeline.write_evaluation(lakehouse.lake, result)
    verdict = result.verdict(settings)
    context.log.info(
        f"v{result.challenger} on {result.info['window']} (not recorded, nothing promoted): {verdict.summary()}"
    )
    report = _report_metadata(
        result, settings, lakehouse.paths.reports / f"forecast_evaluation_v{result.challenger}.png"
    )
    return dg.MaterializeResult(
        metadata={**report, **_verdict_metadata(result, verdict), "recorded": "no: an evaluation promotes nothing"}
    )
