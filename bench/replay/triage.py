"""The triage case replayed: 12 months of the demo world's helpdesk, exported as a user's files.

The CLINC kit has no time, so the replay takes the synthetic helpdesk (lakehouse/triage/world.py, seed 11, 500
tickets a month, 2025-01 .. 2026-10) and writes it as the helpdesk's export would be: tickets once created, agent
labels once given, the CRM's customers; the mapping reads those files like any user's (no generator at run time).
Day 0 (2025-10-01): the nine months of history loaded, the first training (as of 2025-10-01) and September routed,
as the 1 October ticks would have. Then: routing of the month that ended on the 1st at 02:00, the deadline on the
2nd at 00:00, retraining on the 1st of each quarter at 03:00. Training budgets are small (the replay's settings:
20 steps on the newest 1,500 tickets) so four retrainings fit in the replay's wall time on a shared machine.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from bench.replay.fraud import kill_step
from bench.replay.kit import GrowingFile
from bench.replay.scenario import Expect, Fault, Scenario, apply_edits

FIRST_MONTH = date(2025, 1, 1)
MONTHS = 22  # 2025-01 .. 2026-10
SETTINGS = {
    "calendar": {"start": FIRST_MONTH.isoformat()},
    "training": {"max_steps": 20, "probe_per_category": 30, "tickets": 1500},
}
SHIFTED = (date(2026, 8, 1), date(2026, 9, 1))  # the recall months (fault "distribution shift")
SCHEDULES = ["triage_monthly_schedule", "triage_freshness_routes_schedule", "triage_quarterly_retraining_schedule"]
SENSORS = ["triage_source_changes", "asset_check_alerts"]
ROUTES = "triage/ticket_routes"
CONFUSION = "triage/monthly_confusion"


def month_start(months: int) -> date:
    index = FIRST_MONTH.year * 12 + FIRST_MONTH.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def utc_day(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


class World:
    """The demo helpdesk's months, generated once."""

    def __init__(self, shifted: dict[date, list[float]] | None = None):
        from lakehouse.triage.world import WorldConfig, generate_customers, generate_month

        config = WorldConfig(first_month=FIRST_MONTH, months=MONTHS)
        self.customers = generate_customers(config)
        months = [generate_month(config, m, self.customers, (shifted or {}).get(m)) for m in config.month_starts]
        self.tickets = pl.concat([t for t, _ in months])
        self.labels = pl.concat([lab for _, lab in months])
        self.categories = config.categories


class TriageReplay(Scenario):
    def __init__(self, days: int | None = None, faults: bool = True):
        start = utc_day(month_start(9), 4)  # 2025-10-01 04:00, after day 0's work
        end = start + timedelta(days=days) if days else utc_day(month_start(21) + timedelta(days=1), 1)
        super().__init__("triage", start, end, SCHEDULES, SENSORS, description=__doc__.splitlines()[0])
        self.world = World()
        self.shifted = World(shifted={m: recall_mix(self.world.categories) for m in SHIFTED})
        self.files: dict[str, GrowingFile] = {}
        if faults:
            self.faults = [f for f in faults_of(self) if f.at < end]

    def sources(self, folder: Path) -> dict:
        tables = {
            "tickets": {"file": "tickets.parquet", "rows_outside_selection": "skip"},
            "agent_labels": {"file": "agent_labels.parquet"},
            "customers": {"file": "customers.parquet"},
        }
        return {"triage": {"folder": str(folder), "tables": tables, "settings": SETTINGS}}

    def grow(self, folder: Path, now: datetime, faults: list[Fault]) -> None:
        if not self.files:
            self.world.customers.write_parquet(folder / "customers.parquet")
            self.files = {name: GrowingFile(folder / f"{name}.parquet") for name in ("tickets", "agent_labels")}
        naive = now.astimezone(UTC).replace(tzinfo=None)
        tickets = apply_edits("tickets", self.world.tickets, now, faults)
        labels = apply_edits("agent_labels", self.world.labels, now, faults)
        tickets = tickets.filter(_time(tickets, "created_at") <= naive)
        labels = labels.filter(_time(labels, "labelled_at") <= naive).join(tickets.select("ticket_id"), on="ticket_id")
        self.files["tickets"].write(tickets)
        self.files["agent_labels"].write(labels)

    def bootstrap(self, replay) -> None:
        from sensors.triage import retraining_run_config

        first, last = month_start(0), month_start(8)
        replay.run_now("triage_monthly", partition_range=(f"{first:%Y-%m}", f"{last:%Y-%m}"), **_ingest_only())
        day = month_start(9)
        replay.run_now("triage_quarterly_retraining", run_config=retraining_run_config(day))
        replay.run_now("triage_monthly", partition=f"{last:%Y-%m}")

    def models(self) -> list[str]:
        return ["triage_classifier"]


def _ingest_only() -> dict:
    import dagster as dg

    return {"asset_selection": [dg.AssetKey(["triage", "tickets_clean"]), dg.AssetKey(["triage", "agent_labels"])]}


def _time(frame: pl.DataFrame, column: str) -> pl.Expr:
    dtype = frame.schema[column]
    expr = pl.col(column)
    return expr.dt.replace_time_zone(None) if getattr(dtype, "time_zone", None) else expr


def recall_mix(categories: tuple[str, ...]) -> list[float]:
    """A product recall: warranty and defect tickets take half of the month."""
    weights = np.full(len(categories), 1.0)
    for i, name in enumerate(categories):
        if "warranty" in name or "defect" in name or "technical" in name:
            weights[i] = 8.0
    return list(weights / weights.sum())


# --------------------------------------------------------------------------- faults


def _month(frame: pl.DataFrame, month: date) -> pl.Expr:
    column = "created_at" if "created_at" in frame.columns else "labelled_at"
    return _time(frame, column).dt.strftime("%Y-%m") == f"{month:%Y-%m}"


def _late(month: date, arrives: datetime):
    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        return frame.filter(~_month(frame, month)) if table == "tickets" and now < arrives else frame

    return edit


def _relabelled(month: date, corrected: datetime, categories: tuple[str, ...], share: float, seed: int, months):
    """Agent labels of a month of which `share` are wrong (another category, drawn from a hash of the ticket id so
    a label stays the same however the file grows) until `corrected`; `months`: each ticket's month."""

    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        if table != "agent_labels" or now >= corrected:
            return frame
        drawn = pl.col("ticket_id").hash(seed)
        wrong = (drawn // 1000 % len(categories)).replace_strict(dict(enumerate(categories)), return_dtype=pl.String)
        hit = (drawn % 1000 < int(share * 1000)) & (pl.col("month") == f"{month:%Y-%m}")
        return (
            frame.join(months, on="ticket_id", how="left")
            .with_columns(pl.when(hit).then(wrong).otherwise(pl.col("category")).alias("category"))
            .drop("month")
        )

    return edit


def _poisoned(month: date, at: datetime, fixed: datetime):
    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        if table != "tickets" or not at <= now < fixed:
            return frame
        rows = frame.with_row_index("row")
        first = rows.filter(_month(rows, month))["row"].head(1)
        return rows.with_columns(
            pl.when(pl.col("row").is_in(first.implode()))
            .then(pl.col("ticket_id") + "\u200b")
            .otherwise(pl.col("ticket_id"))
            .alias("ticket_id")
        ).drop("row")

    return edit


def _shift(world: World, months: tuple[date, ...]):
    """The world changes: those months' tickets (and labels) are the recall's."""
    keys = [f"{m:%Y-%m}" for m in months]

    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        source = world.tickets if table == "tickets" else world.labels
        month_of = _time(world.tickets, "created_at").dt.strftime("%Y-%m")
        ids = world.tickets.filter(month_of.is_in(keys))["ticket_id"]
        kept = frame.filter(~pl.col("ticket_id").is_in(ids.implode()))
        return pl.concat([kept, source.filter(pl.col("ticket_id").is_in(ids.implode()))], how="diagonal_relaxed")

    return edit


def first_of(months: int, hour: int = 0) -> datetime:
    """The first day of the month `months` after the world's first, at `hour` UTC."""
    return utc_day(month_start(months), hour)


def faults_of(replay: TriageReplay) -> list[Fault]:
    """The files' faults, then the platform's and the models'."""
    world = replay.world
    months = world.tickets.select("ticket_id", _time(world.tickets, "created_at").dt.strftime("%Y-%m").alias("month"))
    late, poisoned, corrected = month_start(10), month_start(12), month_start(13)
    failed = ("triage/tickets_clean", "triage/agent_labels", ROUTES, "triage/published_routes", CONFUSION)
    # the month's run also refreshes the reports read from every month's routes (unpartitioned)
    reports = tuple(Expect("materialization_failed", f"triage/{n}") for n in ("evaluation_report", "roi_report"))
    return [
        Fault(
            "late file",
            "late",
            first_of(11),
            f"the tickets of {late:%Y-%m} arrive two days late (on {month_start(11) + timedelta(days=2)})",
            "the 1st's routing is refused (no tickets for the month), the deadline of the 2nd alerts, the "
            "source-change sensor routes the month once it arrives and the alerts clear",
            fixed_at=first_of(11) + timedelta(days=2),
            edit=_late(late, first_of(11) + timedelta(days=2)),
            alerts=(
                Expect("freshness", ROUTES, f"{late:%Y-%m}"),
                *(Expect("materialization_failed", key, f"{late:%Y-%m}") for key in failed),
                *reports,
            ),
            detect_by=first_of(11, 2),
            failed_jobs=("triage_monthly",),
        ),
        Fault(
            "corrected file",
            "corrected",
            first_of(14),
            f"a fifth of the agent labels of {corrected:%Y-%m} are wrong in the first export, corrected on the 10th",
            "the month is ingested and routed again, its confusion matrix recomputed; the wrong labels may make its "
            "recall check alert until the correction, which clears it",
            fixed_at=first_of(14) + timedelta(days=9),
            edit=_relabelled(corrected, first_of(14) + timedelta(days=9), world.categories, 0.2, 1, months),
            alerts=(Expect("category_recall", CONFUSION, f"{corrected:%Y-%m}"),),
            detect_by=first_of(14, 2),
        ),
        Fault(
            "poisoned file",
            "poisoned",
            first_of(13),
            f"a ticket id of {poisoned:%Y-%m} carries a zero-width space; the export is fixed at noon",
            "the load is refused naming file, column and row, the lake is unchanged, the run failure alerts; once "
            "fixed the month is routed and the alerts clear before the deadline",
            fixed_at=first_of(13, 12),
            edit=_poisoned(poisoned, first_of(13), first_of(13, 12)),
            alerts=(*(Expect("materialization_failed", key, f"{poisoned:%Y-%m}") for key in failed), *reports),
            detect_by=first_of(13, 2),
            failed_jobs=("triage_monthly",),
        ),
    ] + _platform_faults(replay, months)


def _platform_faults(replay: TriageReplay, months: pl.DataFrame) -> list[Fault]:
    lost = (month_start(16), month_start(17))  # labels the 2026-07-01 retraining learns from
    return [
        Fault(
            "killed run",
            "killed_run",
            first_of(15, 3),
            "the quarterly retraining's worker is killed (SIGKILL) in the model step",
            "the run is marked failed, its pool slots are freed, it is retried from the failed step and succeeds",
            watch=kill_step("triage_quarterly_retraining", first_of(15, 3), "triage__model"),
            alerts=(
                Expect("materialization_failed", "triage/model"),
                Expect("materialization_failed", "triage/champion_model"),
            ),
            detect_by=first_of(15, 3),
            failed_jobs=("triage_quarterly_retraining",),
        ),
        Fault(
            "distribution shift",
            "shift",
            utc_day(SHIFTED[0]),
            f"a product recall: warranty and defect tickets take most of {SHIFTED[0]:%Y-%m} and {SHIFTED[1]:%Y-%m}",
            "the routes' category-mix drift check alerts when the first recall month is routed; the quarterly "
            "retraining of October learns the new mix",
            edit=_shift(replay.shifted, SHIFTED),
            world=True,
            until=first_of(21, 4),
            alerts=tuple(
                Expect(check, ROUTES, f"{m:%Y-%m}")
                for m in SHIFTED
                for check in ("category_mix_drift", "human_validation_rate", "mean_confidence")
            )
            + tuple(Expect("category_recall", CONFUSION, f"{m:%Y-%m}") for m in SHIFTED),
            detect_by=first_of(20, 2),
            clears=False,
        ),
        Fault(
            "worse challenger",
            "worse_challenger",
            first_of(18) - timedelta(days=5),
            f"a re-export of the agent labels of {lost[0]:%Y-%m} .. {lost[1]:%Y-%m} is 60 % wrong; fixed on "
            f"{month_start(18) + timedelta(days=14)}",
            "the source-change sensor reloads the routed month; the confusion matrices built on the wrong labels "
            "alert; the July retraining learns from them, its gate refuses the worse challenger, the champion is "
            "kept with a WARN alert; once the labels are fixed the months are reloaded, and the October retraining "
            "passes: the alerts clear",
            fixed_at=first_of(18) + timedelta(days=14),
            edit=_months_relabelled(
                lost, first_of(18) - timedelta(days=5), first_of(18) + timedelta(days=14), replay.world, months
            ),
            alerts=(
                Expect("promotion_gate", "triage/model"),
                *(Expect("category_recall", CONFUSION, f"{m:%Y-%m}") for m in lost),
            ),
            detect_by=first_of(18, 3),
            until=first_of(21, 4),
        ),
    ]


def _months_relabelled(lost: tuple[date, date], at: datetime, fixed: datetime, world: World, months: pl.DataFrame):
    edits = [_relabelled(m, fixed, world.categories, 0.6, 7 + i, months) for i, m in enumerate(_months_between(*lost))]

    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        if now < at:
            return frame
        for one in edits:
            frame = one(table, frame, now)
        return frame

    return edit


def _months_between(first: date, last: date) -> list[date]:
    months, current = [], first
    while current <= last:
        months.append(current)
        current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return months
