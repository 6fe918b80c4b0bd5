"""Freshness SLAs: by when a table of a period must exist, as settings.

A deadline is a time of day, optionally on a weekday (weekly periods) or a day of the month (monthly periods), in
the case's calendar time zone: `Deadline(at="04:00")` every day, `Deadline(weekday=0, at="08:00")` Mondays,
`Deadline(day=2, at="00:00")` the 2nd of each month. At the deadline the platform checks that the period the
deadline expects is there: the latest period the case's own schedule has asked for by then (the day before, this
Monday's snapshot, the month that just ended), or for a nightly forecast the origin `lag_days` before the deadline's
day. A later evaluation of the same period passes once the period is filled, which clears the alert. Nothing here
reads a clock: the deadline instant is given, so the same rule serves production and a replay in simulated time.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from lakehouse.common.section import Section

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Deadline(Section):
    """When a period's table must exist, in the calendar's time zone."""

    at: time  # "HH:MM"
    weekday: int | None = Field(None, ge=0, le=6)  # 0 = Monday: weekly periods
    day: int | None = Field(None, ge=1, le=28)  # day of the month: monthly periods
    lag_days: int = Field(1, ge=0)  # forecasts by origin: the origin expected is this many days before the deadline

    @field_validator("at", mode="before")
    @classmethod
    def _clock(cls, value):
        if isinstance(value, str) and value.count(":") == 1:
            hours, minutes = value.split(":")
            if hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60:
                return time(int(hours), int(minutes))
            raise ValueError(f"a deadline is a time of day HH:MM, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_period(self) -> Deadline:
        if self.weekday is not None and self.day is not None:
            raise ValueError("a deadline is on a weekday (weekly) or a day of the month (monthly), not both")
        return self

    def cron(self) -> str:
        """The deadline as a cron expression (minute hour day-of-month month day-of-week)."""
        day_of_month = "*" if self.day is None else str(self.day)
        day_of_week = "*" if self.weekday is None else str((self.weekday + 1) % 7)  # cron: Sunday 0, Monday 1
        return f"{self.at.minute} {self.at.hour} {day_of_month} * {day_of_week}"

    def describe(self) -> str:
        when = f"{self.at:%H:%M}"
        if self.weekday is not None:
            return f"{WEEKDAYS[self.weekday]} {when}"
        if self.day is not None:
            return f"day {self.day} of each month, {when}"
        return f"{when} every day"

    def expected_origin(self, deadline: datetime, timezone: str) -> date:
        """The origin a forecast published by `deadline` starts from: the calendar day `lag_days` before the
        deadline's own day in the calendar's time zone (the last day whose sales are complete)."""
        return deadline.astimezone(ZoneInfo(timezone)).date() - timedelta(days=self.lag_days)
