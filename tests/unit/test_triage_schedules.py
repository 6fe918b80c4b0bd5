"""The triage calendar: retraining on the first day of each quarter, monthly routing on the 1st."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._utils.schedules import cron_string_iterator

from sensors.triage import (
    QUARTERLY_CRON,
    TIMEZONE,
    triage_monthly_schedule,
    triage_quarterly_retraining_schedule,
)


def _fire_times(cron: str, year: int) -> list[datetime]:
    start = datetime(year - 1, 12, 31, 12, tzinfo=ZoneInfo(TIMEZONE)).timestamp()
    times = []
    for t in cron_string_iterator(start, cron, TIMEZONE):
        if t.year > year:
            return times
        times.append(t)
    return times


def test_retraining_fires_four_times_a_year_on_the_first_day_of_each_quarter():
    for year in (2026, 2027):
        fired = _fire_times(QUARTERLY_CRON, year)
        assert [(t.month, t.day, t.hour) for t in fired] == [(1, 1, 3), (4, 1, 3), (7, 1, 3), (10, 1, 3)]


def test_each_retraining_run_trains_on_labels_known_before_its_quarter():
    for day in (date(2027, 1, 1), date(2027, 4, 1), date(2027, 7, 1), date(2027, 10, 1)):
        context = dg.build_schedule_context(
            scheduled_execution_time=datetime(day.year, day.month, day.day, 3, tzinfo=ZoneInfo(TIMEZONE))
        )
        request = triage_quarterly_retraining_schedule(context)
        assert request.run_key == f"triage-retraining-{day:%Y-%m}"
        assert request.run_config["ops"]["triage__training_set"]["config"]["as_of"] == day.isoformat()
        assert request.run_config["ops"]["triage__frozen_holdout"]["config"]["as_of"] == day.isoformat()


def test_monthly_routing_runs_on_the_first_for_the_month_that_ended():
    from assets.triage import ASSETS, CHECKS
    from resources import default_resources
    from sensors.triage import JOBS

    definitions = dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=JOBS,
        schedules=[triage_monthly_schedule],
        resources=default_resources(),
    )
    schedule = definitions.resolve_schedule_def("triage_monthly_schedule")
    fired = _fire_times(schedule.cron_schedule, 2027)
    assert len(fired) == 12 and all(t.day == 1 and t.hour == 2 for t in fired)
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 8, 1, 2, tzinfo=ZoneInfo("UTC")))
    requests = list(schedule.evaluate_tick(context).run_requests)
    assert [r.partition_key for r in requests] == ["2026-07"]
