"""Fraud jobs and their calendar: daily ingestion, weekly retraining, daily decision-log checks."""


import dagster as dg

from assets.fraud.partitions import daily
from lakehouse.fraud.config import CASE

TIMEZONE = "UTC"

fraud_daily_ingest_job = dg.define_asset_job(
    "fraud_daily_ingest",
    selection=dg.AssetSelection.assets([CASE, "transactions"]),
    partitions_def=daily,
    description="Land yesterday's transactions (with the labels known so far) in the lake.",
)

fraud_training_job = dg.define_asset_job(
    "fraud_training",
    selection=dg.AssetSelection.assets(
        [CASE, "transaction_features"], [CASE, "rule_lists"], [CASE, "rule_lists_online"], [CASE, "cascade_model"], [CASE, "champion_model"]
    ),
    description="Rebuild features and lists, retrain the cascade, gate it and promote it; the service hot-reloads the champion.",
)

fraud_feature_store_job = dg.define_asset_job(
    "fraud_warm_feature_store",
    selection=dg.AssetSelection.assets([CASE, "online_features"]),
    description="Warm a new or emptied Redis feature store from the lake (the stream keeps it current afterwards).",
)

fraud_decision_log_job = dg.define_asset_job(
    "fraud_decision_log",
    selection=dg.AssetSelection.assets([CASE, "decision_log"]),
    partitions_def=daily,
    description="Compact yesterday's decision log and run its monitoring checks (drift, layer-3 share, decision rate).",
)

fraud_daily_ingest_schedule = dg.build_schedule_from_partitioned_job(
    fraud_daily_ingest_job, hour_of_day=0, minute_of_hour=30, description="00:30 UTC: ingest yesterday's transactions."
)
fraud_decision_log_schedule = dg.build_schedule_from_partitioned_job(
    fraud_decision_log_job, hour_of_day=0, minute_of_hour=45, description="00:45 UTC: compact and check yesterday's decisions."
)


@dg.schedule(
    job=fraud_training_job,
    cron_schedule="0 2 * * 1",
    execution_timezone=TIMEZONE,
    description="Monday 02:00 UTC: weekly retraining on every labelled day so far.",
)
def fraud_weekly_training_schedule(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(run_key=f"fraud-training-{context.scheduled_execution_time:%Y-%m-%d}")


JOBS = [fraud_daily_ingest_job, fraud_training_job, fraud_feature_store_job, fraud_decision_log_job]
SCHEDULES = [fraud_daily_ingest_schedule, fraud_decision_log_schedule, fraud_weekly_training_schedule]
SENSORS: list = []
