"""The forecast case replayed: the last 8 weeks of the M5 kit (../shared/realdata/demand, 28 items x 10 stores).

The kit's one file (sales, prices, SNAP days, events) grows a day at a time: a day's row is in the file once the day
is over in the calendar's time zone (America/Los_Angeles), so the prices and events of the horizon are known up to
yesterday only (the kit mixes actuals and planned values in one file). Day 0: the master tables (registering the
stores), every store's history and the first weekly refit, as a team starting would. Schedules: master tables 01:45,
nightly forecasts 02:00 (the seed's 04:00 is the publication deadline: the replay's settings move the nightly
before it), publication by the sensor once every store is forecast, deadline 04:00, weekly refit Sunday 01:00.
Evaluation windows roll with the data (test and validation: the last 28 days each) instead of the kit's fixed split.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from bench.replay.fraud import flush_redis, kill_step
from bench.replay.kit import KITS, GrowingFile, mapping
from bench.replay.scenario import Expect, Fault, Scenario, apply_edits

KIT = KITS / "demand" / "m5_tiny.parquet"
ZONE = ZoneInfo("America/Los_Angeles")
SETTINGS = {
    "evaluation": {"test": "28d", "validation": "28d"},
    "schedules": {"master": "45 1 * * *", "nightly": "0 2 * * *", "refit": "0 1 * * 0"},
}
# A worse configuration (fault "worse challenger"): a global model of two trees and statistical models fitted on
# four weeks only. The gate refits the champion's configuration at the same cut-off, so it is judged like for like.
WORSE = {
    "models": {
        "stat_window": "4w",
        "lightgbm": {"objective": "tweedie", "n_estimators": 2, "learning_rate": 0.01, "n_jobs": 1, "verbosity": -1},
    }
}
SCHEDULES = [
    "forecast_master_schedule",
    "forecast_nightly_schedule",
    "forecast_freshness_published_schedule",
    "forecast_weekly_refit_schedule",
]
SENSORS = [
    "forecast_source_changes",
    "forecast_publish_when_stores_done",
    "forecast_online_store_watch",
    "asset_check_alerts",
]


def local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE)


class ForecastReplay(Scenario):
    def __init__(self, days: int = 56, faults: bool = True):
        first = date(2016, 4, 25) - timedelta(days=56)  # the kit's last 8 weeks
        start = local(first)
        end = local(first + timedelta(days=days), 5)
        super().__init__("forecast", start, end, SCHEDULES, SENSORS, description=__doc__.splitlines()[0])
        self.kit = pl.read_parquet(KIT)
        self.redis = None
        self.file: GrowingFile | None = None
        if faults:
            self.faults = [f for f in faults_of(first) if f.at < end]

    def env(self, home: Path) -> dict[str, str]:
        from lakehouse.common.local_servers import RedisServer

        self.redis = RedisServer()
        self.redis.start()
        return {"LAKEHOUSE_REDIS_URL": self.redis.url}

    def sources(self, folder: Path) -> dict:
        return mapping("forecast", folder, SETTINGS)

    def grow(self, folder: Path, now: datetime, faults: list[Fault]) -> None:
        if self.file is None:
            self.file = GrowingFile(folder / "m5_tiny.parquet")
        complete = self.kit.filter(pl.col("date") < now.astimezone(ZONE).date())
        self.file.write(apply_edits("m5_tiny", complete, now, faults))

    def bootstrap(self, replay) -> None:
        import dagster as dg

        from assets.common import natural_order
        from assets.forecast.partitions import STORES
        from assets.forecast.raw import SALES_KEY

        replay.run_now("forecast_master_refresh")
        stores = natural_order(replay.engine.instance.get_dynamic_partitions(STORES))
        every = (stores[0], stores[-1])
        replay.run_now("forecast_nightly", partition_range=every, asset_selection=[dg.AssetKey(SALES_KEY.path)])
        replay.run_now("forecast_weekly_refit", partition_range=every)

    def models(self) -> list[str]:
        return ["forecast_models"]

    def close(self) -> None:
        if self.redis is not None:
            self.redis.stop()


# --------------------------------------------------------------------------- faults


def _late(day: date, arrives: datetime):
    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        return frame.filter(pl.col("date") != day) if now < arrives else frame

    return edit


def _scaled(first: date, last: date, factor: float, store: str | None = None, until: datetime | None = None):
    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        if until is not None and now >= until:
            return frame
        rows = pl.col("date").is_between(first, last)
        if store is not None:
            rows = rows & (pl.col("store_id").cast(pl.String) == store)
        return frame.with_columns(
            pl.when(rows).then((pl.col("units_sold") * factor).round().cast(pl.Int32)).otherwise(pl.col("units_sold"))
        )

    return edit


def _poisoned(day: date, at: datetime, fixed: datetime):
    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        if not at <= now < fixed:
            return frame
        first = (pl.col("date") == day) & (
            pl.col("series_id") == pl.col("series_id").filter(pl.col("date") == day).min()
        )
        return frame.with_columns(
            pl.when(first).then(pl.lit(-5, pl.Int32)).otherwise(pl.col("units_sold")).alias("units_sold")
        )

    return edit


def _clock(first: date):
    """day(n) and at(n, hour, minute) in the calendar's zone, n days after the replay's first day."""

    def day(n: int) -> date:
        return first + timedelta(days=n)

    def at(n: int, hour: int = 0, minute: int = 0) -> datetime:
        return local(day(n), hour, minute)

    return day, at


def faults_of(first: date) -> list[Fault]:
    """The files' faults, then the platform's and the models'."""
    day, at = _clock(first)
    late, corrected, poisoned = day(9), day(16), day(23)
    published = Expect("freshness", "forecast/published_forecast")
    failed_load = (
        Expect("materialization_failed", "forecast/sales"),
        Expect("materialization_failed", "forecast/store_forecasts"),
    )
    return [
        Fault(
            "late file",
            "late",
            at(10),
            f"the sales of {late} arrive two days late (at {at(12):%Y-%m-%d %H:%M})",
            "the 04:00 deadline alerts (the night's forecasts start from the day before); the next night's load "
            "refuses the series' missing day; the source-change sensor reloads every store once the day arrives, "
            "the forecasts are published again and the alerts clear",
            fixed_at=at(12),
            edit=_late(late, at(12)),
            alerts=(published, *failed_load),
            detect_by=at(10, 4),
            failed_jobs=("forecast_nightly",),
        ),
        Fault(
            "corrected file",
            "corrected",
            at(17),
            f"the sales of {corrected} in store CA_1 first arrive ten times too high; the file is corrected at "
            f"{at(22, 12):%Y-%m-%d %H:%M}",
            "every store is reloaded and forecast again from the corrected history, and published, with no alert",
            fixed_at=at(22, 12),
            edit=_scaled(corrected, corrected, 10.0, "CA_1", until=at(22, 12)),
        ),
        Fault(
            "poisoned file",
            "poisoned",
            at(24),
            f"one series' sales of {poisoned} arrive as -5 units; the file is fixed at {at(24, 12):%Y-%m-%d %H:%M}",
            "the night's load is refused naming file, column and row, the lake is unchanged, the run failure and "
            "the 04:00 deadline alert; once the file is fixed the stores are reloaded, published, and the alerts clear",
            fixed_at=at(24, 12),
            edit=_poisoned(poisoned, at(24), at(24, 12)),
            alerts=(published, *failed_load),
            detect_by=at(24, 4),
            failed_jobs=("forecast_nightly",),
        ),
    ] + _platform_faults(first)


def _platform_faults(first: date) -> list[Fault]:
    day, at = _clock(first)
    return [
        Fault(
            "Redis flushed",
            "redis_flush",
            at(30, 12),
            "the Redis holding the published forecasts is flushed at noon",
            "the store watch alerts within one tick, the night's forecasts are published again and the alert clears",
            act=flush_redis,
            alerts=(Expect("online_store", "forecast/published_forecast"),),
            detect_by=at(30, 12),
        ),
        Fault(
            "killed run",
            "killed_run",
            at(34, 1),
            "the Sunday refit's worker and step are killed (SIGKILL) in the model step",
            "the run is marked failed, its pool slots are freed, it is retried from the failed step and succeeds",
            watch=kill_step("forecast_weekly_refit", at(34, 1), "forecast__model"),
            alerts=tuple(
                Expect("materialization_failed", f"forecast/{name}")
                for name in ("model", "backtest", "champion_model", "planning_forecast", "financial_impact")
            ),
            detect_by=at(34, 1),
            failed_jobs=("forecast_weekly_refit",),
        ),
        Fault(
            "distribution shift",
            "shift",
            at(40),
            f"store TX_2 sells three times more from {day(39)} to {day(45)} (a local surge)",
            "the live accuracy check alerts once the surge's forecasts mature; the Sunday refit learns from it",
            edit=_scaled(day(39), day(45), 3.0, "TX_2"),
            world=True,
            until=at(50),
            alerts=(Expect("mape_drift", "forecast/live_accuracy"),),
            detect_by=at(41, 4),
            clears=False,
        ),
        Fault(
            "worse challenger",
            "worse_challenger",
            at(47, 12),
            "the team sets a worse configuration (a global model of two trees, statistical models on four weeks); "
            f"it is put back at {at(50, 12):%Y-%m-%d %H:%M}",
            "the Sunday refit's gate compares the challenger with the champion's configuration refitted at the same "
            "cut-off, refuses it, keeps the champion with a WARN alert; the next refit passes and the alert clears",
            fixed_at=at(50, 12),
            act=lambda replay: replay.write_sources(**SETTINGS, **WORSE),
            repair=lambda replay: replay.write_sources(**SETTINGS),
            alerts=(Expect("challenger_gate", "forecast/backtest"),),
            detect_by=at(48, 1),
            until=at(55, 2),
        ),
    ]
