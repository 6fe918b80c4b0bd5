"""What a replay plays: a case's span, how its files grow, its own activity, and the faults injected into it.

A fault happens at a fixed simulated time. It may edit what the source shows (a day held back, a corrected or
poisoned file, a shift in the world, labels lost), act on the running platform (flush Redis, kill a run), and it
says which alerts and which failed runs it explains, so the report can tell an expected reaction from a false
alarm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

# The kinds of fault issue 24 asks for.
KINDS = ("late", "corrected", "poisoned", "redis_flush", "killed_run", "shift", "worse_challenger")


@dataclass(frozen=True)
class Expect:
    """An alert a fault explains: its check (or `materialization_failed`), its asset, its partition (None: any)."""

    check: str
    asset: str
    partition: str | None = None

    def matches(self, alert: dict) -> bool:
        return (
            alert["check_name"] == self.check
            and alert["asset_key"] == self.asset
            and (self.partition is None or alert["partition"] == self.partition)
        )


@dataclass
class Fault:
    name: str
    kind: str
    at: datetime
    what: str  # what goes wrong
    reaction: str  # what users expect the platform to do
    fixed_at: datetime | None = None  # when the cause is repaired (the file re-sent, ...)
    alerts: tuple[Expect, ...] = ()  # the alerts it explains; the first must come by `detect_by`
    detect_by: datetime | None = None  # the instant its alert is due (its run's tick, or a deadline)
    failed_jobs: tuple[str, ...] = ()  # failed runs of these jobs requested in [at, until] are explained by it
    until: datetime | None = None  # end of its window (default: fixed_at, else at + 3 days)
    clears: bool = True  # whether its alerts must clear by the end (a drift of a past day stays on record)
    edit: Callable[[str, pl.DataFrame, datetime], pl.DataFrame] | None = None  # table, rows, now -> rows
    world: bool = False  # the edit is the world changing (live traffic sees it too), not a file going wrong
    act: Callable[[Any], None] | None = None  # at `at`, on the replay
    repair: Callable[[Any], None] | None = None  # at `fixed_at`, on the replay (a setting put back)
    watch: Callable[[Any], bool] | None = None  # while runs are going on from `at`: True once it has acted
    verify: Callable[[Any], dict] | None = None  # after the replay: figures showing the reaction happened
    applied: bool = False
    repaired: bool = False
    done_watching: bool = False

    @property
    def window_end(self) -> datetime:
        return self.until or self.fixed_at or self.at + timedelta(days=3)

    def explains_alert(self, alert: dict, raised: datetime) -> bool:
        return self.at <= raised <= self.window_end + timedelta(days=1) and any(e.matches(alert) for e in self.alerts)

    def explains_run(self, run: dict) -> bool:
        at = datetime.fromisoformat(run["at"]) if run.get("at") else None
        return run["job"] in self.failed_jobs and at is not None and self.at <= at <= self.window_end


@dataclass
class Scenario:
    """A case's replay. Subclasses fill in the case's files, activity and faults."""

    case: str
    start: datetime
    end: datetime
    schedules: list[str]  # the schedules ticked (the case's and its freshness deadlines)
    sensors: list[str]  # the sensors ticked at each instant, in order
    faults: list[Fault] = field(default_factory=list)
    extra_instants: list[datetime] = field(default_factory=list)
    description: str = ""
    # Alerts the case's data raises whatever the faults (a kit whose gate refuses every model), and why.
    standing: tuple[Expect, ...] = ()
    standing_reason: str = ""

    def env(self, home: Path) -> dict[str, str]:
        """Environment the daemon and runs need besides the home (a Redis URL, ...)."""
        return {}

    def sources(self, folder: Path) -> dict:
        """The sources file of the replay: the case's mapping, pointed at `folder`."""
        raise NotImplementedError

    def grow(self, folder: Path, now: datetime, faults: list[Fault]) -> None:
        """Write the case's files as they stand at `now`, the faults' edits applied."""
        raise NotImplementedError

    def bootstrap(self, replay) -> None:
        """What the team does on day 0 (load the history, first training), as runs of the instance."""

    def during(self, replay, previous: datetime, now: datetime) -> None:
        """The case's own activity between two instants (live traffic through a service)."""

    def summary(self) -> dict:
        """Figures of the case's own activity for the report (live traffic, ...)."""
        return {}

    def models(self) -> list[str]:
        """The registered model names whose champion history the report shows."""
        return []

    def close(self) -> None:
        """Stop what the scenario started."""


def apply_edits(table: str, frame: pl.DataFrame, now: datetime, faults: list[Fault], world_only: bool = False):
    """The rows of a table as the faults due make them at `now`."""
    for fault in faults:
        if fault.edit is not None and (fault.world or not world_only):
            frame = fault.edit(table, frame, now)
    return frame


def refreshed(replay, sensor: str, partition: str, after: datetime) -> dict:
    """The runs a sensor asked for after `after` that covered `partition`, and whether one succeeded."""
    runs = [
        r
        for r in replay.engine.runs()
        if r["origin"] == f"sensor:{sensor}"
        and r["at"]
        and datetime.fromisoformat(r["at"]) >= after
        and covers(r["partition"], partition)
    ]
    return {
        "refresh_runs": [f"{r['job']} [{r['partition']}] {r['status']}" for r in runs],
        "reloaded": any(r["status"] == "SUCCESS" for r in runs),
    }


def covers(partition: str | None, key: str) -> bool:
    """Whether a run's partition (a key, or a range `first...last`) holds `key`."""
    if partition is None:
        return False
    if "..." in partition:
        first, last = partition.split("...")
        return first <= key <= last
    return partition == key
