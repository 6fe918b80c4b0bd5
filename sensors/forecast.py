"""Forecast jobs and their calendar, in the calendar's time zone (`forecast.settings`).

Nightly (04:00 by default): one run ingests the sales file once for every store partition and
forecasts every store from the champion's fitted state (master tables refreshed at 03:45); when
every store has its forecast, a sensor launches reconciliation, the Redis publication and the
accuracy monitoring. Weekly (Sunday 01:00): the refit, the backtest and its gate, promotion, the
planning forecast and the financial report. Every run reads the `sources` resource: with a user
source configured nothing falls back to the generator.
"""

import json

import dagster as dg

from assets.forecast.evaluation import ACCURACY_KEY, IMPACT_KEY
from assets.forecast.forecasts import OPERATIONAL_KEY, PLANNING_KEY, PUBLISHED_KEY, STORE_FORECASTS_KEY
from assets.forecast.models import BACKTEST_KEY, CHAMPION_KEY, MODEL_KEY
from assets.forecast.partitions import every_store, settings_at_load, store_range_tags
from assets.forecast.raw import MASTER_KEYS, SALES_KEY
from lakehouse.forecast.settings import ForecastSettings

forecast_master_job = dg.define_asset_job(
    "forecast_master_refresh",
    selection=dg.AssetSelection.assets(*MASTER_KEYS),
    description=(
        "Ingest stores (registering their partitions), products, the promotion calendar, events and covariates."
    ),
)

forecast_nightly_job = dg.define_asset_job(
    "forecast_nightly",
    selection=dg.AssetSelection.assets(SALES_KEY, STORE_FORECASTS_KEY),
    description=(
        "Ingest the sales file once for the selected stores and forecast them from the champion's fitted state."
    ),
)

forecast_publish_job = dg.define_asset_job(
    "forecast_nightly_publish",
    selection=dg.AssetSelection.assets(OPERATIONAL_KEY, PUBLISHED_KEY, ACCURACY_KEY),
    description="Reconcile the night's store forecasts bottom-up, publish them to Redis, monitor accuracy.",
)

forecast_weekly_refit_job = dg.define_asset_job(
    "forecast_weekly_refit",
    selection=dg.AssetSelection.assets(SALES_KEY, MODEL_KEY, BACKTEST_KEY, CHAMPION_KEY, PLANNING_KEY, IMPACT_KEY),
    description="Sales, refit (MLflow challenger), backtest and gate, promotion, planning forecast, financial report.",
)


def every_store_request(context: dg.ScheduleEvaluationContext, tag: str) -> dg.RunRequest | dg.SkipReason:
    """One run over every store partition registered so far."""
    keys = every_store(context.instance)
    if not keys:
        return dg.SkipReason("no store partition yet: run forecast_master_refresh first")
    day = context.scheduled_execution_time.date()
    return dg.RunRequest(run_key=f"{tag}-{day}", tags=store_range_tags(keys))


def schedules(settings: ForecastSettings) -> list[dg.ScheduleDefinition]:
    """The case's schedules: cron expressions from `schedules`, in the calendar's time zone."""
    timezone, cron = settings.calendar.timezone, settings.schedules

    @dg.schedule(
        name="forecast_nightly_schedule",
        job=forecast_nightly_job,
        cron_schedule=cron.nightly,
        execution_timezone=timezone,
        description="Nightly forecast from the champion's fitted state: one run over every store.",
    )
    def nightly(context: dg.ScheduleEvaluationContext):
        return every_store_request(context, "nightly")

    @dg.schedule(
        name="forecast_weekly_refit_schedule",
        job=forecast_weekly_refit_job,
        cron_schedule=cron.refit,
        execution_timezone=timezone,
        description="Weekly refit, backtest and gate, promotion, planning forecast and financial report.",
    )
    def weekly_refit(context: dg.ScheduleEvaluationContext):
        return every_store_request(context, "refit")

    master = dg.ScheduleDefinition(
        name="forecast_master_schedule",
        job=forecast_master_job,
        cron_schedule=cron.master,
        execution_timezone=timezone,
        description="Before the nightly run: stores, products, promotion calendar, events and covariates.",
    )
    return [master, nightly, weekly_refit]


@dg.sensor(
    job=forecast_publish_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Launches reconciliation and publication once every store partition has a new nightly forecast; forecasts in "
        "shadow (no champion yet) are reconciled and evaluated, never published."
    ),
)
def forecast_publish_when_stores_done(context: dg.SensorEvaluationContext):
    state = json.loads(context.cursor) if context.cursor else {"after": None, "seen": []}
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=STORE_FORECASTS_KEY, after_storage_id=state["after"]),
        limit=10_000,
        ascending=True,
    ).records
    if not records:
        return dg.SkipReason("no new store forecasts")
    seen = set(state["seen"]) | {r.partition_key for r in records}
    last = records[-1].storage_id
    expected = set(every_store(context.instance))
    if not expected <= seen:
        context.update_cursor(json.dumps({"after": last, "seen": sorted(seen)}))
        return dg.SkipReason(f"{len(expected - seen)} store(s) still to forecast")
    context.update_cursor(json.dumps({"after": last, "seen": []}))
    shadow = sorted({_version(r) for r in records if _metadata(r, "shadow")})
    if shadow:
        context.log.info(
            f"the night's forecasts of v{', v'.join(shadow)} are in shadow (no champion yet): reconciliation and "
            "accuracy only, nothing published to Redis"
        )
        return dg.RunRequest(run_key=f"publish-{last}", asset_selection=[OPERATIONAL_KEY, ACCURACY_KEY])
    return dg.RunRequest(run_key=f"publish-{last}")


def _metadata(record: dg.EventLogRecord, key: str):
    entry = record.asset_materialization.metadata.get(key) if record.asset_materialization else None
    return None if entry is None else entry.value


def _version(record: dg.EventLogRecord) -> str:
    return str(_metadata(record, "model_version"))


JOBS = [forecast_master_job, forecast_nightly_job, forecast_publish_job, forecast_weekly_refit_job]
SCHEDULES = schedules(settings_at_load())  # Dagster needs the time zone and the cron when the code location loads
SENSORS = [forecast_publish_when_stores_done]
