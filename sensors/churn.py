"""Churn jobs and their calendar: monthly training on the first Monday, weekly scoring
Monday morning, CRM push Monday afternoon."""

import dagster as dg

from assets.churn.features import churn_features, churn_staging
from assets.churn.partitions import TIMEZONE
from assets.churn.raw import churn_raw
from assets.churn.scoring import churn_scores
from lakehouse.churn.settings import CASE

# The churn steps run one after another in the run's own process: dbt is parsed once per run and stays warm
# between its steps (resources.dbt.DbtResource.invoke), and the steps share the single-writer warehouse anyway.
churn_weekly_scoring_job = dg.define_asset_job(
    "churn_weekly_scoring",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.assets(churn_raw, churn_staging, churn_features, churn_scores),
    description="Ingest raw tables, rebuild staging, compute this Monday's features and score every active customer.",
)

churn_crm_push_job = dg.define_asset_job(
    "churn_crm_push",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.assets([CASE, "crm_push"]),
    description="Push the Monday scores to the CRM.",
)

churn_monthly_training_job = dg.define_asset_job(
    "churn_monthly_training",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.assets(
        [CASE, "churn_labels"],
        [CASE, "training_set"],
        [CASE, "model"],
        [CASE, "champion_model"],
        [CASE, "model_evaluation"],
        [CASE, "live_performance"],
        [CASE, "ab_test_roi"],
    ),
    description=(
        "Retrain on every snapshot so far, gate (a refusal keeps the champion, in a green run), promote, evaluate, "
        "and refresh monitoring and ROI."
    ),
)


def is_first_monday(day) -> bool:
    return day.weekday() == 0 and day.day <= 7


@dg.schedule(
    job=churn_monthly_training_job,
    cron_schedule="0 5 * * 1",  # every Monday; cron cannot say "first Monday" (day-of-month ORs day-of-week)
    execution_timezone=TIMEZONE,
    description="Monthly retraining on the first Monday of the month, 05:00, before the weekly scoring.",
)
def churn_monthly_training_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.date()
    if not is_first_monday(day):
        return dg.SkipReason(f"{day} is not the first Monday of the month")
    return dg.RunRequest(run_key=f"churn-training-{day:%Y-%m}")


churn_weekly_scoring_schedule = dg.build_schedule_from_partitioned_job(
    churn_weekly_scoring_job,
    hour_of_day=6,
    day_of_week=1,
    description="Monday 06:00: score the week's snapshot.",
)

churn_crm_push_schedule = dg.build_schedule_from_partitioned_job(
    churn_crm_push_job,
    hour_of_day=14,
    day_of_week=1,
    description="Monday 14:00: import the morning's scores into the CRM.",
)

JOBS = [churn_weekly_scoring_job, churn_crm_push_job, churn_monthly_training_job]
SCHEDULES = [churn_monthly_training_schedule, churn_weekly_scoring_schedule, churn_crm_push_schedule]
SENSORS: list = []
