"""The fraud case replayed: 90 days of the kit's test year (../shared/realdata/fraud, 2024).

The kit's card payments grow with the clock (a payment is in the file once it happened); its history before the
replay (2020-2023) is loaded on day 0 with the first training and the feature store warm-up, as a team starting
would. Each day the payments also go live through the fraud service's POST /fraud/decisions (in this process, its
stream consumers inline, its clock replaying the day), so the decision log the 00:45 job compacts is the service's.
Schedules: daily ingest 00:30, decision log 00:45, deadlines 01:00 (the day's payments and decision log), batch
scores 01:30, retraining Monday 02:00. Windows roll with the data (test: the last 90 days; validation: the 91
before), as a production setting would have them, instead of the kit's fixed split.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from bench.replay.kit import KITS, GrowingFile, mapping
from bench.replay.replay import utc
from bench.replay.scenario import Expect, Fault, Scenario, apply_edits, refreshed

KIT = KITS / "fraud"
TIME = "transaction_time_utc"
API_KEY = "replay"
SETTINGS = {
    "windows": {"test": "90d", "validation": "91d", "warmup": "30d"},
}
SCHEDULES = [
    "fraud_daily_ingest_schedule",
    "fraud_decision_log_schedule",
    "fraud_freshness_transactions_schedule",
    "fraud_freshness_decision_log_schedule",
    "fraud_daily_scoring_schedule",
    "fraud_weekly_training_schedule",
]
SENSORS = ["fraud_source_changes", "fraud_online_store_watch", "asset_check_alerts"]


def day_of(frame: pl.DataFrame) -> pl.Expr:
    column = TIME if TIME in frame.columns else "ts"
    return pl.col(column).dt.date()


def _on_days(frame: pl.DataFrame, first: date, last: date) -> pl.Expr:
    return day_of(frame).is_between(first, last)


class LiveService:
    """The fraud decision service in this process, with its own event loop in a thread (as `make demo` runs it):
    payments are POSTed to it through the ASGI transport, and its stream consumers write the decision log."""

    def __init__(self, home: Path, redis_url: str, replay_from: datetime):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fraud-service", daemon=True)
        self.thread.start()
        self.counts = {"requests": 0, "errors": 0, "degraded": 0, "approve": 0, "review": 0, "block": 0}
        self._call(self._start(home, redis_url, replay_from))

    def _call(self, coroutine, timeout: float = 600):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _start(self, home: Path, redis_url: str, replay_from: datetime) -> None:
        import httpx

        from lakehouse.common.home import LakehouseHome
        from lakehouse.common.settings import configured_sources_path
        from lakehouse.fraud.api import FraudService
        from lakehouse.fraud.settings import FraudSettings
        from lakehouse.serving.app import API_KEY_HEADER, ServingSettings, create_app

        settings = ServingSettings(
            api_key=API_KEY, home=LakehouseHome(home), redis_url=redis_url, mlflow_uri=None, cases=("fraud",)
        )
        fraud = FraudSettings.load(configured_sources_path()).with_(
            consumers="inline", serving={"replay_from": replay_from, "future_tolerance_s": 3 * 86_400}
        )
        self.service = FraudService(settings, fraud)
        self.app = create_app(settings, services=[self.service.case_service()])
        self.lifespan = self.app.router.lifespan_context(self.app)
        await self.lifespan.__aenter__()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://replay", headers={API_KEY_HEADER: API_KEY}
        )

    def post(self, rows: pl.DataFrame) -> None:
        if rows.height:
            self._call(self._post(rows))

    async def _post(self, rows: pl.DataFrame) -> None:
        for row in rows.sort("ts", "tx_id").iter_rows(named=True):
            body = {k: v for k, v in row.items() if v is not None and k != "is_fraud"} | {"ts": row["ts"].isoformat()}
            response = await self.client.post("/fraud/decisions", json=body)
            self.counts["requests"] += 1
            if response.status_code != 200:
                self.counts["errors"] += 1
                continue
            decided = response.json()
            self.counts[decided["decision"]] += 1
            self.counts["degraded"] += int(decided["degraded"])
            # A day's payments are sent in a burst: the consumers apply each one before the next is scored, as
            # minutes of real time between them would (otherwise a payment's windows miss the one before it).
            await self._drain()

    async def _drain(self) -> None:
        for _ in range(60_000):
            if await self.service.drained():
                return
            await asyncio.sleep(0.001)
        raise TimeoutError("the fraud service's consumers did not catch up within a minute")

    def close(self) -> None:
        async def stop():
            await self.client.aclose()
            await self.lifespan.__aexit__(None, None, None)

        try:
            self._call(stop(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


class FraudReplay(Scenario):
    def __init__(
        self,
        days: int = 90,
        faults: bool = True,
        history_from: date | None = None,
        live: bool = True,
        schedules: list[str] = SCHEDULES,
    ):
        start = utc(2024, 1, 1)
        end = start + timedelta(days=days, hours=2)
        super().__init__("fraud", start, end, schedules, SENSORS, description=__doc__.splitlines()[0])
        self.live_traffic = live  # the service, its model and feature store (day 0 trains and warms)
        self.kit = (
            pl.read_parquet(KIT / "transactions.parquet")
            .filter(pl.col("split") != "after_test")
            .with_columns(pl.col(TIME).dt.convert_time_zone("UTC"))
        )
        self.history_from = history_from  # a shorter history (a slice): the kit's rows before it are not there
        if history_from is not None:
            self.kit = self.kit.filter(pl.col(TIME).dt.date() >= history_from)
        self.redis = None
        self.live: LiveService | None = None
        self.traffic: pl.DataFrame | None = None
        self.file: GrowingFile | None = None
        if faults:
            self.faults = faults_of(start)
        self.faults = [f for f in self.faults if f.at < end]

    def env(self, home: Path) -> dict[str, str]:
        from lakehouse.common.local_servers import RedisServer

        self.redis = RedisServer()
        self.redis.start()
        return {"LAKEHOUSE_REDIS_URL": self.redis.url}

    def sources(self, folder: Path) -> dict:
        calendar = {"calendar": {"start": self.history_from.isoformat()}} if self.history_from else {}
        return mapping("fraud", folder, {**SETTINGS, **calendar})

    def grow(self, folder: Path, now: datetime, faults: list[Fault]) -> None:
        if self.file is None:
            pl.read_parquet(KIT / "customers.parquet").write_parquet(folder / "customers.parquet")
            self.file = GrowingFile(folder / "transactions.parquet")
        visible = self.kit.filter(pl.col(TIME) <= now)
        self.file.write(apply_edits("transactions", visible, now, faults))

    def bootstrap(self, replay) -> None:
        from lakehouse.common.settings import configured_sources_path
        from lakehouse.fraud.settings import FraudSettings

        first = FraudSettings.load(configured_sources_path()).calendar.start
        last = (self.start - timedelta(days=2)).date()  # the first 00:30 tick loads the day before the start
        replay.run_now("fraud_daily_ingest", partition_range=(first.isoformat(), last.isoformat()))
        if not self.live_traffic:
            return
        replay.run_now("fraud_training")
        replay.run_now("fraud_warm_feature_store")
        self.traffic = live_traffic(replay.folder)
        day_before = self.start - timedelta(days=1)  # the day the first 00:45 tick compacts went through it too
        self.live = LiveService(replay.home, self.redis.url, day_before)
        self.during(replay, day_before, self.start)

    def during(self, replay, previous: datetime, now: datetime) -> None:
        """The payments of (previous, now] through the service, as the world made them."""
        if self.live is None:
            return
        rows = self.traffic.filter((pl.col("ts") > previous) & (pl.col("ts") <= now))
        self.live.post(apply_edits("live", rows, now, self.faults, world_only=True))

    def models(self) -> list[str]:
        return ["fraud_cascade"]

    def summary(self) -> dict:
        return {"live_traffic": dict(self.live.counts) if self.live else {}}

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
        if self.redis is not None:
            self.redis.stop()


def ci_slice() -> FraudReplay:
    """The slice CI runs (tests/integration/test_replay_slice.py): one day after a week of history, the ingest and its
    deadline only, and a poisoned file fixed at noon: a refused load, two alerts, a catch-up run, the alerts cleared."""
    start = utc(2024, 1, 1)
    slice_ = FraudReplay(
        days=1,
        faults=False,
        history_from=(start - timedelta(days=7)).date(),
        live=False,
        schedules=["fraud_daily_ingest_schedule", "fraud_freshness_transactions_schedule"],
    )
    poisoned = next(f for f in faults_of(start - timedelta(days=30)) if f.kind == "poisoned")
    day = (start - timedelta(days=1)).date()
    at, fixed = start + timedelta(minutes=15), start + timedelta(hours=12)  # after day 0's backfill
    slice_.faults = [
        Fault(
            poisoned.name,
            poisoned.kind,
            at,
            f"one payment of {day} is re-sent with a negative amount at 00:15; the file is fixed at 12:00",
            poisoned.reaction,
            fixed_at=fixed,
            edit=_poisoned(day, at, fixed),
            alerts=(
                Expect("freshness", "fraud/transactions", day.isoformat()),
                Expect("materialization_failed", "fraud/transactions", day.isoformat()),
                Expect("materialization_failed", "fraud/transaction_features"),
            ),
            detect_by=start + timedelta(hours=1),
            failed_jobs=("fraud_daily_ingest",),
        )
    ]
    return slice_


def live_traffic(folder: Path) -> pl.DataFrame:
    """Every payment of the kit in the case's own columns, through its mapping (labels dropped when posted)."""
    from lakehouse.common.sources import CaseSource, read_mapped

    source = CaseSource.model_validate({**mapping("fraud", KIT)["fraud"], "origin": "kit"})
    frame = read_mapped(source, "transactions").frame
    ts = pl.col("ts")
    return frame.with_columns(
        ts.dt.replace_time_zone("UTC") if frame["ts"].dtype.time_zone is None else ts.dt.convert_time_zone("UTC")
    )


# --------------------------------------------------------------------------- faults


def _late(day: date, arrives: datetime):
    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        return frame.filter(~_on_days(frame, day, day)) if now < arrives else frame

    return edit


def _wrong_amounts(day: date, corrected: datetime, factor: float):
    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        if now >= corrected:
            return frame
        return frame.with_columns(
            pl.when(_on_days(frame, day, day)).then(pl.col("amount") * factor).otherwise(pl.col("amount"))
        )

    return edit


def _poisoned(day: date, at: datetime, fixed: datetime):
    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        if not at <= now < fixed:
            return frame
        first = frame.with_row_index("row").filter(_on_days(frame, day, day))["row"].head(1)
        return (
            frame.with_row_index("row")
            .with_columns(
                pl.when(pl.col("row").is_in(first.implode())).then(-pl.col("amount")).otherwise(pl.col("amount"))
            )
            .drop("row")
        )

    return edit


def _shift(first: date, last: date, factor: float):
    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        return frame.with_columns(
            pl.when(_on_days(frame, first, last)).then(pl.col("amount") * factor).otherwise(pl.col("amount"))
        )

    return edit


def _labels_lost(first: date, last: date, at: datetime, fixed: datetime):
    def edit(table: str, frame: pl.DataFrame, now: datetime) -> pl.DataFrame:
        if not at <= now < fixed:
            return frame
        return frame.with_columns(
            pl.when(_on_days(frame, first, last)).then(False).otherwise(pl.col("is_fraud")).alias("is_fraud")
        )

    return edit


def flush_redis(replay) -> None:
    """The fault 'Redis flushed': every key of the replay's Redis gone."""
    import redis

    client = redis.Redis.from_url(os.environ["LAKEHOUSE_REDIS_URL"])
    try:
        client.flushall()
    finally:
        client.close()


def kill_step(job: str, at: datetime, step: str):
    """Kill a run's worker and its step, as the out-of-memory killer would, once the step has started."""

    def watch(replay) -> bool:
        for run in replay.engine.runs():
            if run["job"] != job or run["at"] != at.isoformat() or run["status"] != "STARTED":
                continue
            worker, step_pid = replay.engine.pids(run["run_id"], step)
            if worker is None or step_pid is None:
                return False
            for pid in {step_pid, worker}:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            replay.progress(f"fault: killed {job} run {run['run_id'][:8]} in step {step} (pids {step_pid}, {worker})")
            return True
        return False

    return watch


def _clock(start: datetime):
    """day(n) and at(n, hour, minute), n days after the replay's start."""

    def day(n: int) -> date:
        return (start + timedelta(days=n)).date()

    def at(n: int, hour: int = 0, minute: int = 0) -> datetime:
        return start + timedelta(days=n, hours=hour, minutes=minute)

    return day, at


def faults_of(start: datetime) -> list[Fault]:
    """The files' faults, then the platform's and the models'."""
    day, at = _clock(start)
    late, corrected, poisoned = day(9), day(16), day(30)
    return [
        Fault(
            "late file",
            "late",
            at(10),
            f"the payments of {late} arrive two days late (at {at(12):%Y-%m-%d %H:%M})",
            "the ingest of that day is refused (no rows), the 01:00 deadline alerts, the source-change sensor loads "
            "the day once it arrives (catch-up: payments, features, scores) and the alerts clear",
            fixed_at=at(12),
            edit=_late(late, at(12)),
            alerts=(
                Expect("freshness", "fraud/transactions", late.isoformat()),
                Expect("materialization_failed", "fraud/transactions", late.isoformat()),
                Expect("materialization_failed", "fraud/transaction_features"),
                Expect("materialization_failed", "fraud/scores", late.isoformat()),
            ),
            detect_by=at(10, 1),
            failed_jobs=("fraud_daily_ingest", "fraud_daily_scoring"),
        ),
        Fault(
            "corrected file",
            "corrected",
            at(17),
            f"the payments of {corrected} first arrive with their amounts in cents (x100); the file is corrected "
            f"at {at(23, 12):%Y-%m-%d %H:%M}",
            "the corrected day is reloaded and its features and scores refreshed, with no alert",
            fixed_at=at(23, 12),
            edit=_wrong_amounts(corrected, at(23, 12), 100.0),
            verify=lambda replay: refreshed(replay, "fraud_source_changes", corrected.isoformat(), at(23, 12)),
        ),
        Fault(
            "poisoned file",
            "poisoned",
            at(31),
            f"one payment of {poisoned} arrives with a negative amount; the file is fixed at "
            f"{at(31, 12):%Y-%m-%d %H:%M}",
            "the load is refused naming file, column and row, the lake is unchanged, the run failure and the "
            "deadline alert; once the file is fixed the day is loaded and the alerts clear",
            fixed_at=at(31, 12),
            edit=_poisoned(poisoned, at(31), at(31, 12)),
            alerts=(
                Expect("freshness", "fraud/transactions", poisoned.isoformat()),
                Expect("materialization_failed", "fraud/transactions", poisoned.isoformat()),
                Expect("materialization_failed", "fraud/transaction_features"),
                Expect("materialization_failed", "fraud/scores", poisoned.isoformat()),
            ),
            detect_by=at(31, 1),
            failed_jobs=("fraud_daily_ingest", "fraud_daily_scoring"),
        ),
    ] + _platform_faults(start)


def _platform_faults(start: datetime) -> list[Fault]:
    day, at = _clock(start)
    shift_first, shift_last = day(63), day(69)
    lost_first, lost_last = day(-192), day(-13)
    refused = at(77, 2)  # the Monday retraining that learns from the lost labels
    return [
        Fault(
            "Redis flushed",
            "redis_flush",
            at(44, 12),
            "the Redis holding the feature store (and the decision stream) is flushed at noon",
            "the store watch alerts within one tick, the store is warmed again (by the service or the warm-up job) "
            "and the alert clears",
            act=flush_redis,
            alerts=(Expect("online_store", "fraud/online_features"),),
            detect_by=at(44, 12),
        ),
        Fault(
            "killed run",
            "killed_run",
            at(49, 2),
            "the Monday retraining's worker and step are killed (SIGKILL) in the model step",
            "the run is marked failed, its pool slots are freed, it is retried from the failed step and succeeds; "
            "the failure alerts clear with the retry",
            watch=kill_step("fraud_training", at(49, 2), "fraud__model"),
            alerts=(
                Expect("materialization_failed", "fraud/model"),
                Expect("materialization_failed", "fraud/champion_model"),
                Expect("materialization_failed", "fraud/rule_lists_online"),
            ),
            detect_by=at(49, 2),
            failed_jobs=("fraud_training",),
        ),
        Fault(
            "distribution shift",
            "shift",
            at(63),
            f"every payment from {shift_first} to {shift_last} is four times larger (the world changed)",
            "the decision log's drift check alerts on the first shifted day, within one tick of its compaction; the "
            "Monday retraining learns from the new data by the case's weekly policy",
            edit=_shift(shift_first, shift_last, 4.0),
            world=True,
            until=at(71),
            alerts=tuple(
                Expect(check, "fraud/decision_log", (shift_first + timedelta(days=i)).isoformat())
                for i in range(7)
                for check in ("feature_drift", "decision_rate", "layer3_share")
            ),
            detect_by=at(64, 0, 45),
            clears=False,
        ),
        Fault(
            "worse challenger",
            "worse_challenger",
            at(73, 12),
            f"a re-export of the history loses every fraud label from {lost_first} to {lost_last} (the retraining's "
            f"training and validation windows); the labels come back at {at(80, 12):%Y-%m-%d %H:%M}",
            "the source-change sensor reloads the re-exported days; the Monday retraining learns from them, its gate "
            "refuses the worse challenger, the champion is kept and a WARN alert raised; once the labels are back "
            "the next retraining passes and the alert clears",
            fixed_at=at(80, 12),
            edit=_labels_lost(lost_first, lost_last, at(73, 12), at(80, 12)),
            alerts=(Expect("promotion_gate", "fraud/model"),),
            detect_by=refused,
            until=at(84, 3),
        ),
    ]
