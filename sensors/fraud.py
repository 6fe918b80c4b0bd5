"""Fraud jobs and their calendar (in the data calendar's time zone): daily ingestion with the
features, daily batch scoring and decision-log checks, weekly retraining."""

import dagster as dg

from assets.fraud.partitions import CALENDAR
from lakehouse.fraud.settings import CASE


def _assets(*names: str) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*([CASE, n] for n in names))


fraud_daily_ingest_job = dg.define_asset_job(
    "fraud_daily_ingest",
    selection=_assets("transactions", "transaction_features"),
    description=(
        "Land a day of transactions (with the labels known so far) from the configured source, then rebuild the "
        "features."
    ),
)

fraud_training_job = dg.define_asset_job(
    "fraud_training",
    selection=_assets("rule_lists", "model", "champion_model", "rule_lists_online"),
    description=(
        "Learn the layer-1 rules, retrain the cascade, gate it against its floors, the champion and the rules only, "
        "promote it on a pass (a refusal keeps the champion: a green run and a WARN alert) and publish the "
        "champion's rules; the service hot-reloads the champion."
    ),
)

fraud_scoring_job = dg.define_asset_job(
    "fraud_daily_scoring",
    selection=_assets("scores"),
    description=(
        "Score a day's payments in batch with the champion, or in shadow with the first challenger while there is "
        "no champion (backfill it over any loaded days)."
    ),
)

fraud_evaluation_job = dg.define_asset_job(
    "fraud_evaluation",
    selection=_assets("evaluation"),
    description=(
        "Evaluate the stored scores over a window (run config `start`, `end`; default the settings' test window), "
        "or any registered version (run config `version`) without promoting it."
    ),
)

fraud_feature_store_job = dg.define_asset_job(
    "fraud_warm_feature_store",
    selection=_assets("online_features"),
    description="Warm a new or emptied Redis feature store from the lake (the stream keeps it current afterwards).",
)

fraud_decision_log_job = dg.define_asset_job(
    "fraud_decision_log",
    selection=_assets("decision_log"),
    description="Compact a day's decision log and run its monitoring checks (drift, layer-3 share, decision rate).",
)

fraud_daily_ingest_schedule = dg.build_schedule_from_partitioned_job(
    fraud_daily_ingest_job,
    hour_of_day=0,
    minute_of_hour=30,
    description="00:30: ingest yesterday's transactions and rebuild the features.",
)
fraud_scoring_schedule = dg.build_schedule_from_partitioned_job(
    fraud_scoring_job,
    hour_of_day=1,
    minute_of_hour=30,
    description="01:30: score yesterday's payments with the champion.",
)
fraud_decision_log_schedule = dg.build_schedule_from_partitioned_job(
    fraud_decision_log_job,
    hour_of_day=0,
    minute_of_hour=45,
    description="00:45: compact and check yesterday's decisions.",
)


@dg.schedule(
    job=fraud_training_job,
    cron_schedule="0 2 * * 1",
    execution_timezone=CALENDAR.timezone,
    description="Monday 02:00: weekly retraining on every labelled day so far.",
)
def fraud_weekly_training_schedule(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(run_key=f"fraud-training-{context.scheduled_execution_time:%Y-%m-%d}")


JOBS = [
    fraud_daily_ingest_job,
    fraud_training_job,
    fraud_scoring_job,
    fraud_evaluation_job,
    fraud_feature_store_job,
    fraud_decision_log_job,
]
SCHEDULES = [
    fraud_daily_ingest_schedule,
    fraud_scoring_schedule,
    fraud_decision_log_schedule,
    fraud_weekly_training_schedule,
]
SENSORS: list = []
