from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from sensors.churn import (
    TIMEZONE,
    churn_crm_push_schedule,
    churn_monthly_training_schedule,
    churn_weekly_scoring_schedule,
)


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(TIMEZONE))


def _mondays(year: int):
    day = date(year, 1, 1)
    day += timedelta(days=(7 - day.weekday()) % 7)
    while day.year == year:
        yield day
        day += timedelta(weeks=1)


def test_training_runs_exactly_on_the_twelve_first_mondays_of_a_year():
    fired = []
    for year in (2027, 2028):  # 2028 is a leap year starting on a Saturday
        runs = []
        for monday in _mondays(year):
            context = dg.build_schedule_context(scheduled_execution_time=_at(monday, 5))
            result = churn_monthly_training_schedule(context)
            if isinstance(result, dg.RunRequest):
                runs.append(monday)
        assert len(runs) == 12
        assert [d.month for d in runs] == list(range(1, 13))
        assert all(d.weekday() == 0 and d.day <= 7 for d in runs)
        fired += runs
    assert len({r for r in fired}) == 24


def test_cron_fires_every_monday_and_the_check_picks_the_first():
    assert churn_monthly_training_schedule.cron_schedule == "0 5 * * 1"


def _resolved(schedule) -> dg.ScheduleDefinition:
    import definitions

    return definitions.defs().resolve_schedule_def(schedule.name)


def _request(schedule, when: datetime) -> dg.RunRequest:
    import definitions

    defs = definitions.defs()
    context = dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())
    data = defs.resolve_schedule_def(schedule.name).evaluate_tick(context)
    assert len(data.run_requests) == 1
    return data.run_requests[0]


def test_weekly_scoring_runs_monday_morning_on_that_mondays_snapshot():
    monday = date(2026, 11, 16)
    request = _request(churn_weekly_scoring_schedule, _at(monday, 6))
    assert request.partition_key == monday.isoformat()
    assert "6 * * 1" in _resolved(churn_weekly_scoring_schedule).cron_schedule


def test_crm_push_runs_monday_afternoon_on_the_same_snapshot():
    monday = date(2026, 11, 16)
    request = _request(churn_crm_push_schedule, _at(monday, 14))
    assert request.partition_key == monday.isoformat()
    assert _resolved(churn_crm_push_schedule).cron_schedule.startswith("0 14 ")
