"""Nightly: forecasts per store from the champion's fitted state, bottom-up reconciliation and
publication to Redis. Weekly: the planning horizon from the same models, reconciled top-down."""

from datetime import date

import dagster as dg
import polars as pl

from assets.common import OWNERS, check_result, table
from assets.forecast.models import CHAMPION_KEY
from assets.forecast.partitions import store_partitions
from assets.forecast.raw import SALES_KEY
from lakehouse.forecast import pipeline
from lakehouse.forecast.publish import publish, vectors
from lakehouse.forecast.reconcile import BOTTOM_UP, TOP_DOWN
from lakehouse.forecast.settings import CASE, ForecastSettings
from resources import LakehouseResource, MlflowResource, RedisResource

STORE_FORECASTS_KEY = dg.AssetKey([CASE, "store_forecasts"])
OPERATIONAL_KEY = dg.AssetKey([CASE, "operational_forecast"])
PLANNING_KEY = dg.AssetKey([CASE, "planning_forecast"])
PUBLISHED_KEY = dg.AssetKey([CASE, "published_forecast"])
COHERENCE = "Children sum to their parent within 1e-6 at every level, no negative forecast (ERROR)."


class OriginConfig(dg.Config):
    origin: str | None = None  # the last period of known sales (ISO date); default: the latest in the lake


def _origin(config: OriginConfig, data: pipeline.CaseData) -> date:
    return date.fromisoformat(config.origin) if config.origin else data.last_day


@dg.asset(
    key=STORE_FORECASTS_KEY,
    deps=[SALES_KEY, CHAMPION_KEY],
    partitions_def=store_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=CASE,
    kinds={"statsforecast", "mlforecast", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "Nightly base forecast over the operational horizon (D+1..D+14 by default) of every active store x SKU, each by "
        "its segment's model from the champion's fitted state (`models:/forecast_models@champion`); kept per origin."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "forecast_volume",
            asset=STORE_FORECASTS_KEY,
            description="At least 98 % of each store's active series are forecast (ERROR; worst store reported).",
        ),
        dg.AssetCheckSpec(
            "no_missing_series",
            asset=STORE_FORECASTS_KEY,
            description="Every active series has its whole horizon (WARN).",
        ),
    ],
)
def forecast_store_forecasts(
    context: dg.AssetExecutionContext, config: OriginConfig, lakehouse: LakehouseResource, mlflow: MlflowResource
):
    settings = ForecastSettings()
    stores = context.partition_keys
    data = pipeline.read_case_data(lakehouse.lake, stores)
    models, version = pipeline.champion_models(mlflow.registry(lakehouse), settings, stores)
    origin = _origin(config, data)
    forecasts, outcomes = pipeline.nightly_forecast(data, models, origin, settings)
    pipeline.write_store_forecasts(lakehouse.lake, forecasts, origin)
    context.log.info(
        f"{forecasts['unique_id'].n_unique():,} series of {len(stores)} store(s) forecast from origin {origin} by champion v{version}"
    )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": forecasts.height,
            "origin": str(origin),
            "stores": len(stores),
            "series": forecasts["unique_id"].n_unique(),
            "champion_version": version,
            "models": table(
                forecasts.group_by("segment", "model")
                .agg(pl.col("unique_id").n_unique().alias("series"))
                .sort("segment")
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
        "Operational forecast of one origin (the latest by default): bottom-up reconciliation national -> the store levels "
        "-> store -> SKU (each SKU keeps its model's forecast, totals are sums); top-down alongside."
    ),
    check_specs=[dg.AssetCheckSpec("coherent_and_non_negative", asset=OPERATIONAL_KEY, description=COHERENCE)],
)
def forecast_operational(config: OriginConfig, lakehouse: LakehouseResource):
    settings = ForecastSettings()
    base = pipeline.read_store_forecasts(lakehouse.lake, date.fromisoformat(config.origin) if config.origin else None)
    table, outcome = pipeline.reconcile_forecast(base, pipeline.read_case_data(lakehouse.lake), settings, BOTTOM_UP)
    lakehouse.lake.write(table, CASE, "operational_forecast")
    yield dg.MaterializeResult(metadata=_reconciled_metadata(table, settings, BOTTOM_UP))
    yield check_result(outcome, OPERATIONAL_KEY)


@dg.asset(
    key=PLANNING_KEY,
    deps=[CHAMPION_KEY, SALES_KEY],
    group_name=CASE,
    kinds={"hierarchicalforecast", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "Planning forecast over the planning horizon (52 weeks by default) from the champion's fitted state, recursive; "
        "reconciled top-down with forecast proportions (the seed's strategic planning), bottom-up alongside."
    ),
    check_specs=[dg.AssetCheckSpec("coherent_and_non_negative", asset=PLANNING_KEY, description=COHERENCE)],
)
def forecast_planning(config: OriginConfig, lakehouse: LakehouseResource, mlflow: MlflowResource):
    settings = ForecastSettings()
    data = pipeline.read_case_data(lakehouse.lake)
    models, version = pipeline.champion_models(mlflow.registry(lakehouse), settings, data.stores["store_id"].to_list())
    table, outcome = pipeline.planning_forecast(data, models, _origin(config, data), settings)
    lakehouse.lake.write(table, CASE, "planning_forecast")
    yield dg.MaterializeResult(
        metadata={**_reconciled_metadata(table, settings, TOP_DOWN), "champion_version": version}
    )
    yield check_result(outcome, PLANNING_KEY)


def _reconciled_metadata(reconciled: pl.DataFrame, settings: ForecastSettings, column: str) -> dict:
    total = reconciled.filter(pl.col("level") == "national").sort("ds")
    periods = total.height
    return {
        "dagster/row_count": reconciled.height,
        "origin": str(reconciled["origin"].max()),
        "periods": periods,
        "first_period": str(total["ds"].min()),
        "last_period": str(total["ds"].max()),
        "nodes": table(reconciled.group_by("level").agg(pl.col("node").n_unique().alias("nodes")).sort("nodes")),
        f"national_total_{column}": round(float(total[column].sum())),
    }


@dg.asset(
    key=PUBLISHED_KEY,
    deps=[OPERATIONAL_KEY],
    group_name=CASE,
    kinds={"redis"},
    owners=OWNERS[CASE],
    description="The operational vector of every store x SKU with its origin, published to Redis for the ordering system; atomic per run (new namespace, then one pointer switch).",
)
def forecast_published(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, redis: RedisResource
) -> dg.MaterializeResult:
    table = vectors(lakehouse.lake.read(CASE, "operational_forecast"), BOTTOM_UP)
    client = redis.client()
    try:
        outcome = publish(client, table, context.run.run_id)
    finally:
        client.close()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": outcome["written"],
            "origin": outcome["origin"],
            "run_namespace": outcome["run_id"],
            "previous_run": outcome["previous_run"] or "none",
        }
    )
