"""Forecast jobs and their calendar (Europe/Paris).

Weekly refit, Sunday night: per-store segmentation and statistical fits at 01:00, then at
03:00 the global LightGBM models (one MLflow run), the backtest and the financial report.
Nightly at 04:00: one run per store forecasts D+1..D+14 from the fitted state (master tables
refreshed at 03:45); when every store of the night is done, a sensor launches the
reconciliation, the atomic Redis publication and the accuracy monitoring.
"""

import json

import dagster as dg

from assets.forecast.evaluation import ACCURACY_KEY, BACKTEST_KEY, IMPACT_KEY
from assets.forecast.forecasts import OPERATIONAL_KEY, PUBLISHED_KEY, STORE_FORECASTS_KEY, STRATEGIC_KEY
from assets.forecast.models import GLOBAL_MODELS_KEY, SALES_KEY, SEGMENTS_KEY, STAT_MODELS_KEY
from assets.forecast.partitions import store_partitions
from assets.forecast.raw import forecast_master_tables

TIMEZONE = "Europe/Paris"

forecast_master_job = dg.define_asset_job(
    "forecast_master_refresh",
    selection=dg.AssetSelection.assets(forecast_master_tables),
    description="Ingest stores, products, the promotion calendar, weather forecasts and events.",
)

forecast_weekly_refit_job = dg.define_asset_job(
    "forecast_weekly_refit",
    selection=dg.AssetSelection.assets(SALES_KEY, SEGMENTS_KEY, STAT_MODELS_KEY),
    partitions_def=store_partitions,
    description="Per store: ingest sales, segment every series, fit AutoARIMA / MSTL on the bounded window.",
)

forecast_global_refit_job = dg.define_asset_job(
    "forecast_global_refit",
    selection=dg.AssetSelection.assets(GLOBAL_MODELS_KEY, BACKTEST_KEY, IMPACT_KEY),
    description="Fit the global LightGBM models (MLflow run, registered versions), backtest, order simulation and ROI.",
)

forecast_nightly_job = dg.define_asset_job(
    "forecast_nightly",
    selection=dg.AssetSelection.assets(SALES_KEY, STORE_FORECASTS_KEY),
    partitions_def=store_partitions,
    description="Per store: ingest yesterday's sales and forecast D+1..D+14 from the weekly fitted state.",
)

forecast_publish_job = dg.define_asset_job(
    "forecast_nightly_publish",
    selection=dg.AssetSelection.assets(OPERATIONAL_KEY, STRATEGIC_KEY, PUBLISHED_KEY, ACCURACY_KEY),
    description="Reconcile the night's store forecasts (bottom-up and top-down), publish the operational one to Redis, monitor accuracy.",
)


def _every_store(context: dg.ScheduleEvaluationContext, tag: str):
    day = context.scheduled_execution_time.date()
    return [dg.RunRequest(run_key=f"{tag}-{day}-{key}", partition_key=key) for key in store_partitions.get_partition_keys()]


@dg.schedule(job=forecast_weekly_refit_job, cron_schedule="0 1 * * 0", execution_timezone=TIMEZONE, description="Weekly refit, Sunday 01:00: one run per store.")
def forecast_weekly_refit_schedule(context: dg.ScheduleEvaluationContext):
    return _every_store(context, "refit")


forecast_global_refit_schedule = dg.ScheduleDefinition(
    job=forecast_global_refit_job, cron_schedule="0 3 * * 0", execution_timezone=TIMEZONE,
    description="Weekly refit, Sunday 03:00: global LightGBM models, backtest and ROI after the per-store fits.",
)

forecast_master_schedule = dg.ScheduleDefinition(
    job=forecast_master_job, cron_schedule="45 3 * * *", execution_timezone=TIMEZONE,
    description="Nightly 03:45: promotion calendar, weather forecasts and events for the 04:00 forecasts.",
)


@dg.schedule(job=forecast_nightly_job, cron_schedule="0 4 * * *", execution_timezone=TIMEZONE, description="Nightly forecast D+1..D+14 at 04:00: one run per store, from the weekly fitted state.")
def forecast_nightly_schedule(context: dg.ScheduleEvaluationContext):
    return _every_store(context, "nightly")


@dg.sensor(job=forecast_publish_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Launches reconciliation and publication once every store partition has a new nightly forecast.")
def forecast_publish_when_stores_done(context: dg.SensorEvaluationContext):
    state = json.loads(context.cursor) if context.cursor else {"after": None, "seen": []}
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=STORE_FORECASTS_KEY, after_storage_id=state["after"]), limit=10_000, ascending=True
    ).records
    if not records:
        return dg.SkipReason("no new store forecasts")
    seen = set(state["seen"]) | {r.partition_key for r in records}
    last = records[-1].storage_id
    expected = set(store_partitions.get_partition_keys())
    if expected <= seen:
        context.update_cursor(json.dumps({"after": last, "seen": []}))
        return dg.RunRequest(run_key=f"publish-{last}")
    context.update_cursor(json.dumps({"after": last, "seen": sorted(seen)}))
    return dg.SkipReason(f"{len(expected - seen)} store(s) still to forecast")


JOBS = [forecast_master_job, forecast_weekly_refit_job, forecast_global_refit_job, forecast_nightly_job, forecast_publish_job]
SCHEDULES = [forecast_weekly_refit_schedule, forecast_global_refit_schedule, forecast_master_schedule, forecast_nightly_schedule]
SENSORS = [forecast_publish_when_stores_done]
