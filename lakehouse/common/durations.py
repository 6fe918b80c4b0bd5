"""Durations of the settings' language: `3d`, `2w`, `4mo`, `1y`, counted on a calendar."""

from __future__ import annotations

import re
from datetime import date, timedelta

_DURATION = re.compile(r"^(\d+)\s*(d|w|mo|y)$")


def back(day: date, duration: str) -> date:
    """`day` minus a duration such as `3d`, `2w`, `4mo` or `1y` (months clamp to the month's last day)."""
    return shift(day, duration, -1)


def forward(day: date, duration: str) -> date:
    return shift(day, duration, 1)


def shift(day: date, duration: str, sign: int) -> date:
    count, unit = parse_duration(duration)
    if unit in ("d", "w"):
        return day + sign * timedelta(days=count * (7 if unit == "w" else 1))
    index = day.year * 12 + day.month - 1 + sign * count * (12 if unit == "y" else 1)
    year, month = divmod(index, 12)
    following = date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
    return date(year, month + 1, min(day.day, (following - timedelta(days=1)).day))


def parse_duration(text: str) -> tuple[int, str]:
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"duration {text!r}: use a positive count and a unit d, w, mo or y (e.g. 3d, 2w, 4mo)")
    return int(match.group(1)), match.group(2)
