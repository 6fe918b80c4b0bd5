"""The fraud schedules: each daily tick asks for the day before, in the calendar's zone, with no
run config; nothing before the calendar's first day."""

from datetime import UTC, datetime

import dagster as dg

import definitions
from sensors.fraud import (
    fraud_daily_ingest_schedule,
    fraud_decision_log_schedule,
    fraud_scoring_schedule,
    fraud_weekly_training_schedule,
)


def _tick(schedule, when: datetime):
    defs = definitions.defs()
    with dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def()) as context:
        return defs.resolve_schedule_def(schedule.name).evaluate_tick(context)


def test_daily_ticks_ask_for_yesterday_without_run_config():
    for schedule, hour in (
        (fraud_daily_ingest_schedule, 0),
        (fraud_decision_log_schedule, 0),
        (fraud_scoring_schedule, 1),
    ):
        resolved = definitions.defs().resolve_schedule_def(schedule.name)
        assert resolved.cron_schedule.endswith(f" {hour} * * *") and resolved.execution_timezone == "UTC"
        [request] = _tick(schedule, datetime(2026, 11, 24, hour, 45, tzinfo=UTC)).run_requests
        assert request.partition_key == "2026-11-23" and not request.run_config


def test_no_tick_before_the_calendar():
    result = _tick(fraud_daily_ingest_schedule, datetime(2026, 10, 2, 0, 30, tzinfo=UTC))
    assert not result.run_requests


def test_weekly_training_on_mondays():
    assert fraud_weekly_training_schedule.cron_schedule == "0 2 * * 1"
    [request] = _tick(fraud_weekly_training_schedule, datetime(2026, 11, 23, 2, tzinfo=UTC)).run_requests
    assert request.run_key == "fraud-training-2026-11-23"
