"""Nightly: forecasts per store from fitted state, hierarchical reconciliation, publication to Redis."""

from datetime import date

import dagster as dg
import polars as pl

from assets.common import OWNERS, frame_schema
from assets.forecast.io import all_sales, forecast_table, load_pickle, master_tables, model_path, store_data
from assets.forecast.models import GLOBAL_MODELS_KEY, SALES_KEY, SEGMENTS_KEY, STAT_MODELS_KEY
from assets.forecast.partitions import store_partitions
from lakehouse.forecast.config import CASE, ForecastSettings, WorldConfig
from lakehouse.forecast.features import period_start
from lakehouse.forecast.models import FORECAST_COLUMNS, forecast_store
from lakehouse.forecast.publish import publish, vectors
from lakehouse.forecast.reconcile import aggregate_base_forecasts, aggregate_history, coherence, reconcile
from resources import LakehouseResource, RedisResource

STORE_FORECASTS_KEY = dg.AssetKey([CASE, "store_forecasts"])
OPERATIONAL_KEY = dg.AssetKey([CASE, "operational_forecast"])
STRATEGIC_KEY = dg.AssetKey([CASE, "strategic_forecast"])
PUBLISHED_KEY = dg.AssetKey([CASE, "published_forecast"])


class NightlyConfig(dg.Config):
    origin: str | None = None  # last day of known sales; default: each store's latest sales day


def _latest_origin(lakehouse: LakehouseResource) -> date:
    import os

    root = lakehouse.lake.table_url(CASE, "store_forecasts")
    origins = [d.removeprefix("origin=") for d in os.listdir(root) if d.startswith("origin=")]
    return date.fromisoformat(max(origins))


def store_forecast_checks(store_id: str, forecasts: pl.DataFrame, active: int, horizon: int, settings: ForecastSettings) -> list[dg.AssetCheckResult]:
    """Forecast volume and missing series of one store's night."""
    series = forecasts["sku_id"].n_unique()
    complete = forecasts.group_by("sku_id").len().filter(pl.col("len") == horizon).height
    volume_ok = active > 0 and series >= settings.volume_min_share * active
    return [
        dg.AssetCheckResult(
            check_name="forecast_volume",
            passed=bool(volume_ok),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"store": store_id, "value": series, "threshold": f">= {settings.volume_min_share:.0%} of {active} active series", "rows": forecasts.height},
        ),
        dg.AssetCheckResult(
            check_name="no_missing_series",
            passed=bool(complete == active),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"store": store_id, "value": active - complete, "threshold": "0 active series without a full horizon"},
        ),
    ]


@dg.asset(
    key=STORE_FORECASTS_KEY,
    deps=[SALES_KEY, SEGMENTS_KEY, STAT_MODELS_KEY, GLOBAL_MODELS_KEY],
    partitions_def=store_partitions,
    group_name=CASE,
    kinds={"statsforecast", "mlforecast", "parquet"},
    owners=OWNERS[CASE],
    description="Nightly base forecast D+1..D+14 of every active store x SKU series, each by its segment's model from the weekly fitted state; kept per origin in the lake.",
    metadata={"dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(n, str(t)) for n, t in FORECAST_COLUMNS.items()])},
    check_specs=[
        dg.AssetCheckSpec("forecast_volume", asset=STORE_FORECASTS_KEY, description="At least 98 % of the store's active series are forecast (ERROR)."),
        dg.AssetCheckSpec("no_missing_series", asset=STORE_FORECASTS_KEY, description="Every active series has its full horizon (WARN)."),
    ],
)
def forecast_store_forecasts(context: dg.AssetExecutionContext, config: NightlyConfig, lakehouse: LakehouseResource):
    settings = ForecastSettings.from_env()
    freq = WorldConfig.from_env().frequency
    global_models = load_pickle(model_path(lakehouse, "global_models"))
    tables = master_tables(lakehouse)
    rows = 0
    checks: dict[str, list[dg.AssetCheckResult]] = {}
    for store_id in context.partition_keys:
        data = store_data(lakehouse, store_id, tables)
        origin = date.fromisoformat(config.origin) if config.origin else data.sales["date"].max()
        stat = load_pickle(model_path(lakehouse, "stat_models", store_id))
        segments = lakehouse.lake.read(CASE, "segments", ("store", store_id))
        forecasts = forecast_store(data, segments, stat["models"], global_models, origin, freq, settings)
        lakehouse.lake.write(forecasts, CASE, forecast_table(origin), ("store", store_id))
        active = data.sales.filter((pl.col("date") <= origin) & (pl.col("date") > origin - pl.duration(days=28)))["sku_id"].n_unique()
        checks[store_id] = store_forecast_checks(store_id, forecasts, active, freq.horizon, settings)
        rows += forecasts.height
        context.log.info(f"{store_id}: {forecasts['sku_id'].n_unique()} series forecast from origin {origin}")
    yield dg.MaterializeResult(metadata={"dagster/row_count": rows, "stores": len(context.partition_keys)})
    # One evaluation per check: the worst store of the run.
    for name in ("forecast_volume", "no_missing_series"):
        results = [r for store in checks.values() for r in store if r.check_name == name]
        failed = [r for r in results if not r.passed]
        yield (failed or results)[0]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(OPERATIONAL_KEY, deps=[STORE_FORECASTS_KEY, SALES_KEY], group_name=CASE, kinds={"hierarchicalforecast", "parquet"}, owners=OWNERS[CASE],
                     description="Operational forecast: bottom-up reconciliation national -> region -> store -> SKU (each SKU keeps its model's forecast, totals are sums)."),
        dg.AssetSpec(STRATEGIC_KEY, deps=[STORE_FORECASTS_KEY, SALES_KEY], group_name=CASE, kinds={"hierarchicalforecast", "parquet"}, owners=OWNERS[CASE],
                     description="Strategic forecast: top-down reconciliation with forecast proportions from the national base forecast."),
    ],
    check_specs=[
        dg.AssetCheckSpec("coherent_and_non_negative", asset=OPERATIONAL_KEY, description="Children sum to their parent within tolerance at every level; no negative forecast."),
        dg.AssetCheckSpec("coherent_and_non_negative", asset=STRATEGIC_KEY, description="Children sum to their parent within tolerance at every level; no negative forecast."),
    ],
    can_subset=False,
)
def forecast_reconciliation(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):
    settings = ForecastSettings.from_env()
    freq = WorldConfig.from_env().frequency
    origin = _latest_origin(lakehouse)
    base = pl.read_parquet(f"{lakehouse.lake.table_url(CASE, forecast_table(origin))}/store=*/data.parquet", hive_partitioning=False)
    stores = master_tables(lakehouse)["stores"]
    totals = (
        all_sales(lakehouse)
        .filter(pl.col("date") <= origin)
        .with_columns(ds=period_start(pl.col("date"), freq))
        .group_by("store_id", "ds")
        .agg(pl.col("units").sum().cast(pl.Float64).alias("y"))
        .collect()
        .filter(pl.col("store_id").is_in(base["store_id"].unique().implode()))
    )
    history = aggregate_history(totals, stores)
    aggregate_base = aggregate_base_forecasts(history, freq, sorted(base["ds"].unique().to_list()))
    reconciled = reconcile(base, aggregate_base, stores)
    for name, key in (("operational", OPERATIONAL_KEY), ("strategic", STRATEGIC_KEY)):
        table = reconciled[name]
        lakehouse.lake.write(table, CASE, f"{name}_forecast")
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "dagster/row_count": table.height,
                "dagster/column_schema": frame_schema(table),
                "origin": str(origin),
                "national_total_d1_d14": float(table.filter(pl.col("level") == "national")["yhat"].sum()),
            },
        )
    for name, key in (("operational", OPERATIONAL_KEY), ("strategic", STRATEGIC_KEY)):
        yield coherence_check(reconciled[name], key, settings)


def coherence_check(table: pl.DataFrame, key: dg.AssetKey, settings: ForecastSettings) -> dg.AssetCheckResult:
    stats = coherence(table)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="coherent_and_non_negative",
        passed=stats["max_relative_gap"] <= settings.coherence_tolerance and stats["negative_values"] == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={**stats, "value": stats["max_relative_gap"], "threshold": f"<= {settings.coherence_tolerance} relative gap, 0 negatives"},
    )


@dg.asset(
    key=PUBLISHED_KEY,
    deps=[OPERATIONAL_KEY],
    group_name=CASE,
    kinds={"redis"},
    owners=OWNERS[CASE],
    description="The operational D+1..D+14 vector of every store x SKU with its origin, published to Redis for the ordering system; atomic per run (new namespace, then one pointer switch).",
)
def forecast_published(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, redis: RedisResource) -> dg.MaterializeResult:
    operational = lakehouse.lake.read(CASE, "operational_forecast").filter(pl.col("level") == "sku")
    ids = operational["unique_id"].str.split("/")
    table = vectors(operational.with_columns(store_id=ids.list.get(2), sku_id=ids.list.get(3)))
    client = redis.client()
    try:
        outcome = publish(client, table, context.run_id)
    finally:
        client.close()
    return dg.MaterializeResult(metadata={"dagster/row_count": outcome["written"], "origin": outcome["origin"], "run_namespace": outcome["run_id"], "previous_run": outcome["previous_run"] or "none"})
