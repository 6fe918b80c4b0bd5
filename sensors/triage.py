"""Triage jobs and their calendar: the previous month routed on the 1st, then the reports that read its routes;
retraining every quarter (the reports are not part of it: they read routes, which a retraining does not change)."""

from datetime import date

import dagster as dg

from assets.triage.partitions import TIMEZONE
from lakehouse.triage.pipeline import CASE

triage_monthly_job = dg.define_asset_job(
    "triage_monthly",
    selection=dg.AssetSelection.assets(
        [CASE, "tickets_clean"],
        [CASE, "agent_labels"],
        [CASE, "ticket_routes"],
        [CASE, "published_routes"],
        [CASE, "monthly_confusion"],
        [CASE, "evaluation_report"],
        [CASE, "roi_report"],
    ),
    description=(
        "Ingest and scrub the month's tickets, route them with the champion (in shadow while there is none), publish "
        "the queues, build the confusion matrix, then refresh the evaluation and ROI reports from the routes."
    ),
)

triage_quarterly_retraining_job = dg.define_asset_job(
    "triage_quarterly_retraining",
    selection=dg.AssetSelection.assets(
        [CASE, "frozen_holdout"],
        [CASE, "training_set"],
        [CASE, "model"],
        [CASE, "champion_model"],
    ),
    description=(
        "Retrain on the validated tickets known before the quarter starts, compare with the champion on the frozen "
        "hold-out tickets neither learnt from, promote only if not worse beyond noise (a refusal keeps the champion "
        "and leaves the run green)."
    ),
)

QUARTERLY_CRON = "0 3 1 1,4,7,10 *"  # 03:00 on the first day of each quarter


def retraining_run_config(day: date) -> dict:
    """Train on labels known before the quarter starts."""
    as_of = {"config": {"as_of": day.isoformat()}}
    return {"ops": {"triage__training_set": as_of, "triage__frozen_holdout": as_of}}


@dg.schedule(
    job=triage_quarterly_retraining_job,
    cron_schedule=QUARTERLY_CRON,
    execution_timezone=TIMEZONE,
    description="Quarterly retraining (seed): 1 January, April, July and October at 03:00.",
)
def triage_quarterly_retraining_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.date()
    return dg.RunRequest(run_key=f"triage-retraining-{day:%Y-%m}", run_config=retraining_run_config(day))


triage_monthly_schedule = dg.build_schedule_from_partitioned_job(
    triage_monthly_job,
    hour_of_day=2,
    day_of_month=1,
    description="02:00 on the 1st: the month that just ended.",
)

JOBS = [triage_monthly_job, triage_quarterly_retraining_job]
SCHEDULES = [triage_quarterly_retraining_schedule, triage_monthly_schedule]
SENSORS: list = []
