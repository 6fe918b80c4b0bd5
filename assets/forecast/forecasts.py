"""Nightly: forecasts per store from the champion's fitted state, reconciliation and publication to Redis.
Weekly: the planning horizon from the same models. Each horizon is reconciled by the method the version's
backtest chose."""

from datetime import date

import dagster as dg
import polars as pl

from assets.common import OWNERS, check_result, table
from assets.forecast.models import CHAMPION_KEY
from assets.forecast.partitions import store_partitions
from assets.forecast.raw import SALES_KEY
from lakehouse.forecast import pipeline
from lakehouse.forecast.lifecycle import reconciliation_methods
from lakehouse.forecast.models import FALLBACKS
from lakehouse.forecast.publish import ShadowForecast, publish, vectors
from lakehouse.forecast.settings import CASE, ForecastSettings
from resources import LakehouseResource, MlflowResource, RedisResource, SourcesResource

STORE_FORECASTS_KEY = dg.AssetKey([CASE, "store_forecasts"])
OPERATIONAL_KEY = dg.AssetKey([CASE, "operational_forecast"])
PLANNING_KEY = dg.AssetKey([CASE, "planning_forecast"])
PUBLISHED_KEY = dg.AssetKey([CASE, "published_forecast"])
COHERENCE = "Children sum to their parent within 1e-6 at every level, no negative forecast (ERROR)."


class OriginConfig(dg.Config):
    origin: str | None = None  # the last period of known sales (ISO date); default: the latest in the lake


def _origin(config: OriginConfig, data: pipeline.CaseData) -> date:
    return date.fromisoformat(config.origin) if config.origin else data.last_day


NO_MODEL = "no version of {name} exists yet: nothing forecast (materialize forecast/model, the weekly refit)"


def _no_model(context, name: str, asset_key: dg.AssetKey, checks: tuple[str, ...]):
    """Nothing to forecast with: say so, materialize nothing; each check says why (WARN), the run stays green."""
    message = NO_MODEL.format(name=name)
    context.log.warning(message)
    for check in checks:
        yield dg.AssetCheckResult(
            check_name=check,
            asset_key=asset_key,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=message,
        )


def fallback_counts(forecasts: pl.DataFrame) -> str:
    """How many series a fallback forecast (their routed model gave nothing: too short, new since the fit)."""
    counts = forecasts.filter(pl.col("model").is_in(FALLBACKS)).group_by("model").agg(pl.col("unique_id").n_unique())
    return ", ".join(f"{model}: {n:,}" for model, n in counts.sort("model").iter_rows()) or "none"


def _choice_metadata(choice) -> dict:
    return {
        "model_version": choice.version,
        "shadow": choice.shadow,
        "serving": choice.label + (f": {choice.note}" if choice.shadow else ""),
    }


@dg.asset(
    key=STORE_FORECASTS_KEY,
    deps=[SALES_KEY, CHAMPION_KEY],
    partitions_def=store_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=CASE,
    kinds={"statsforecast", "mlforecast", "parquet"},
    owners=OWNERS[CASE],
    output_required=False,
    description=(
        "Nightly base forecast over the operational horizon (D+1..D+14 by default) of every active store x SKU, each "
        "by its segment's model from the champion's fitted state (`models:/forecast_models@champion`); kept per "
        "origin. With no champion yet, the latest challenger forecasts in shadow (rows marked `shadow`, never "
        "published)."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "forecast_volume",
            asset=STORE_FORECASTS_KEY,
            description="At least `volume_min_share` of each store's active series are forecast (ERROR; worst store).",
        ),
        dg.AssetCheckSpec(
            "no_missing_series",
            asset=STORE_FORECASTS_KEY,
            description="Every active series has its whole horizon (WARN).",
        ),
    ],
)
def forecast_store_forecasts(
    context: dg.AssetExecutionContext,
    config: OriginConfig,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    sources: SourcesResource,
):
    settings = sources.settings(ForecastSettings)
    stores = context.partition_keys
    data = pipeline.read_case_data(lakehouse.lake, stores)
    serving = pipeline.serving_models(mlflow.registry(lakehouse), settings, stores)
    if serving is None:
        yield from _no_model(
            context, settings.model_name, STORE_FORECASTS_KEY, ("forecast_volume", "no_missing_series")
        )
        return
    models, choice = serving
    origin = _origin(config, data)
    forecasts, outcomes = pipeline.nightly_forecast(data, models, choice, origin, settings)
    pipeline.write_store_forecasts(lakehouse.lake, forecasts, origin)
    (context.log.warning if choice.shadow else context.log.info)(
        f"{forecasts['unique_id'].n_unique():,} series of {len(stores)} store(s) forecast from origin {origin} "
        f"by {choice.label}" + (": written and evaluated, never published" if choice.shadow else "")
    )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": forecasts.height,
            "origin": str(origin),
            "stores": len(stores),
            "series": forecasts["unique_id"].n_unique(),
            **_choice_metadata(choice),
            "series_by_fallback": fallback_counts(forecasts),
            "models": table(
                forecasts.group_by("segment", "model")
                .agg(pl.col("unique_id").n_unique().alias("series"))
                .sort("segment", "model")
            ),
        }
    )
    for outcome in outcomes:
        yield check_result(outcome, STORE_FORECASTS_KEY)


@dg.asset(
    key=OPERATIONAL_KEY,
    deps=[STORE_FORECASTS_KEY],
    group_name=CASE,
    kinds={"hierarchicalforecast", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "Operational forecast of one origin (the latest by default), coherent national -> the store levels -> store -> "
        "SKU: bottom-up, top-down and MinTrace, `reconciled` by the method the model version's backtest chose for "
        "the operational horizon (bottom-up without a choice). Shadow forecasts (no champion yet) are reconciled and "
        "marked."
    ),
    check_specs=[dg.AssetCheckSpec("coherent_and_non_negative", asset=OPERATIONAL_KEY, description=COHERENCE)],
)
def forecast_operational(
    config: OriginConfig, lakehouse: LakehouseResource, mlflow: MlflowResource, sources: SourcesResource
):
    settings = sources.settings(ForecastSettings)
    base = pipeline.read_store_forecasts(lakehouse.lake, date.fromisoformat(config.origin) if config.origin else None)
    version = base["model_version"][0] if "model_version" in base.columns else None
    method = reconciliation_methods(mlflow.registry(lakehouse), settings, version)["operational"]
    table, outcome = pipeline.reconcile_forecast(base, pipeline.read_case_data(lakehouse.lake), settings, method)
    lakehouse.lake.write(table, CASE, "operational_forecast")
    yield dg.MaterializeResult(metadata=_reconciled_metadata(table))
    yield check_result(outcome, OPERATIONAL_KEY)


@dg.asset(
    key=PLANNING_KEY,
    deps=[CHAMPION_KEY, SALES_KEY],
    group_name=CASE,
    kinds={"hierarchicalforecast", "parquet"},
    owners=OWNERS[CASE],
    output_required=False,
    description=(
        "Planning forecast over the planning horizon (52 weeks by default) from the champion's fitted state, "
        "recursive; reconciled by the method the version's backtest chose for the long horizon (top-down with "
        "forecast proportions without a choice), every method alongside. With no champion yet, from the latest "
        "challenger in shadow (marked)."
    ),
    check_specs=[dg.AssetCheckSpec("coherent_and_non_negative", asset=PLANNING_KEY, description=COHERENCE)],
)
def forecast_planning(
    context: dg.AssetExecutionContext,
    config: OriginConfig,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    sources: SourcesResource,
):
    settings = sources.settings(ForecastSettings)
    data = pipeline.read_case_data(lakehouse.lake)
    serving = pipeline.serving_models(mlflow.registry(lakehouse), settings, data.stores["store_id"].to_list())
    if serving is None:
        yield from _no_model(context, settings.model_name, PLANNING_KEY, ("coherent_and_non_negative",))
        return
    models, choice = serving
    method = reconciliation_methods(mlflow.registry(lakehouse), settings, choice.version)["planning"]
    table, outcome = pipeline.planning_forecast(data, models, choice, _origin(config, data), settings, method)
    lakehouse.lake.write(table, CASE, "planning_forecast")
    yield dg.MaterializeResult(metadata={**_reconciled_metadata(table), **_choice_metadata(choice)})
    yield check_result(outcome, PLANNING_KEY)


def _reconciled_metadata(reconciled: pl.DataFrame) -> dict:
    total = reconciled.filter(pl.col("level") == "national").sort("ds")
    periods = total.height
    return {
        "dagster/row_count": reconciled.height,
        "origin": str(reconciled["origin"].max()),
        "periods": periods,
        "first_period": str(total["ds"].min()),
        "last_period": str(total["ds"].max()),
        "nodes": table(reconciled.group_by("level").agg(pl.col("node").n_unique().alias("nodes")).sort("nodes")),
        "method": reconciled["method"][0],
        "national_total": round(float(total["reconciled"].sum())),
        **(
            {"model_version": reconciled["model_version"][0], "shadow": bool(reconciled["shadow"][0])}
            if "shadow" in reconciled.columns
            else {}
        ),
    }


@dg.asset(
    key=PUBLISHED_KEY,
    deps=[OPERATIONAL_KEY],
    group_name=CASE,
    kinds={"redis"},
    owners=OWNERS[CASE],
    output_required=False,
    description=(
        "The operational vector of every store x SKU with its origin and model version, published to Redis for the "
        "ordering system; atomic per run (new namespace, then one pointer switch). Shadow forecasts are never "
        "published: the step says so and materializes nothing."
    ),
)
def forecast_published(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, redis: RedisResource):
    operational = lakehouse.lake.read(CASE, "operational_forecast")
    try:
        table = vectors(operational)
    except ShadowForecast as refusal:
        context.log.warning(f"nothing published: {refusal}; Redis keeps the last published night")
        return
    client = redis.client()
    try:
        outcome = publish(client, table, context.run.run_id)
    finally:
        client.close()
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": outcome["written"],
            "origin": outcome["origin"],
            "model_version": table["model_version"][0] if table.height else "none",
            "run_namespace": outcome["run_id"],
            "previous_run": outcome["previous_run"] or "none",
        }
    )
