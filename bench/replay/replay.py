"""The clock of a replay: a fresh home, its instance and daemon (bench/replay/engine.py), and the scenario's
instants in order. See bench/replay/__init__.py for what a replay is."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import load_average
from bench.replay import report
from bench.replay.engine import Engine, Instant
from bench.replay.scenario import Scenario


def lake_digest(root: Path) -> str:
    """A hash of every file of a lake folder (names and bytes): equal digests, byte-identical lake."""
    digest = hashlib.sha256()
    if root.exists():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class Replay:
    """One case's replay in a fresh home."""

    def __init__(self, scenario: Scenario, home: Path, progress=print, wall_budget_s: float | None = None):
        self.scenario = scenario
        self.planned_end = scenario.end
        self.wall_budget_s = wall_budget_s  # no instant starts after it: the span played ends there
        self.home = home.resolve()
        self.progress = progress
        self.folder = self.home / "source"  # the user's folder, as it grows
        self.instants: list[Instant] = []
        self.alert_instants: dict[str, datetime] = {}  # evaluation id -> the simulated instant it was recorded
        self.clear_instants: dict[str, datetime] = {}
        self.lake_checks: list[dict] = []  # lake digests around the loads a poisoned file refused
        self.now: datetime = scenario.start
        self.started = time.monotonic()
        self.load_at_start = load_average()

    # ------------------------------------------------------------------ setup

    def environment(self) -> dict[str, str]:
        if self.home.exists():
            shutil.rmtree(self.home)
        self.folder.mkdir(parents=True)
        from bench.replay.engine import instance_yaml

        instance_yaml(self.home / "dagster")
        sources = self.home / "sources.yaml"
        import yaml

        sources.write_text(yaml.safe_dump(self.scenario.sources(self.folder), sort_keys=False))
        env = {
            **os.environ,
            "LAKEHOUSE_HOME": str(self.home),
            "DAGSTER_HOME": str(self.home / "dagster"),
            "LAKEHOUSE_SOURCES": str(sources),
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            **self.scenario.env(self.home),
        }
        for name in ("LAKEHOUSE_LAKE_URL", "MLFLOW_TRACKING_URI", "LAKEHOUSE_ALERT_WEBHOOK_URL", "CRM_BASE_URL"):
            env.pop(name, None)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")])
        )
        return env

    def run(self) -> None:
        env = self.environment()
        os.environ.clear()
        os.environ.update(env)  # the definitions and the instance of this process see the replay's home
        self.scenario.grow(self.folder, self.now, self.scenario.faults)
        with Engine(env, self.home, self.progress) as engine:
            self.engine = engine
            self.progress(f"{self.scenario.case}: bootstrap at {self.now:%Y-%m-%d %H:%M}")
            try:
                self.scenario.bootstrap(self)
                engine.wait_idle()
                self._tick_sensors(self.now, Instant(self.now))
                self._clock()
                engine.wait_idle(self._watch)
                self.wall_s = time.monotonic() - self.started
                self.data = report.collect(self)
            finally:
                self.scenario.close()

    def launch(
        self,
        job: str,
        *,
        partition: str | None = None,
        partition_range: tuple[str, str] | None = None,
        run_config: dict | None = None,
        asset_selection: list | None = None,
        origin: str = "bootstrap",
    ) -> str:
        """Queue a run the way a person would from the UI or `dagster job launch` (day 0's backfill and training)."""
        import dagster as dg

        tags = {}
        if partition_range:
            tags = {
                "dagster/asset_partition_range_start": partition_range[0],
                "dagster/asset_partition_range_end": partition_range[1],
            }
        request = dg.RunRequest(
            partition_key=partition, run_config=run_config or {}, tags=tags, asset_selection=asset_selection
        )
        return self.engine.submit(job, request, origin, self.now)

    def wait(self) -> None:
        self.engine.wait_idle(self._watch)

    def run_now(self, job: str, **kwargs) -> str:
        """Day 0's work: a run, waited for; a failure stops the replay (nothing after it would mean anything)."""
        run_id = self.launch(job, **kwargs)
        self.wait()
        run = next(r for r in self.engine.runs() if r["run_id"] == run_id)
        if run["status"] != "SUCCESS":
            raise RuntimeError(f"day 0: {job} {run['status']}: {run['failure']}")
        self.progress(f"{self.scenario.case}: day 0 {job} {run['seconds']} s")
        return run_id

    def write_sources(self, **settings) -> None:
        """The user edits the sources file's settings for the case (a configuration change)."""
        import yaml

        sources = self.scenario.sources(self.folder)
        section = sources[self.scenario.case]
        section["settings"] = {**section.get("settings", {}), **settings}
        (self.home / "sources.yaml").write_text(yaml.safe_dump(sources, sort_keys=False))

    # ------------------------------------------------------------------ the clock

    def _clock(self) -> None:
        scenario, engine = self.scenario, self.engine
        ticks = engine.schedule_ticks(scenario.schedules, scenario.start, scenario.end)
        moments = {t for t, _ in ticks} | {f.at for f in scenario.faults} | {f.fixed_at for f in scenario.faults}
        moments |= set(scenario.extra_instants) | {scenario.end}
        previous = scenario.start
        for now in sorted(m for m in moments if m is not None and scenario.start < m <= scenario.end):
            if self.wall_budget_s is not None and self.elapsed_s() > self.wall_budget_s:
                self._stop_at(previous)
                return
            started = time.monotonic()
            self.now = now
            instant = Instant(now)
            scenario.grow(self.folder, now, scenario.faults)
            for fault in scenario.faults:
                if not fault.applied and fault.at <= now:
                    fault.applied = True
                    instant.faults.append(fault.name)
                    if fault.act is not None:
                        fault.act(self)
                if fault.fixed_at and not fault.repaired and fault.fixed_at <= now:
                    fault.repaired = True
                    instant.faults.append(f"{fault.name} fixed")
                    if fault.repair is not None:
                        fault.repair(self)
            scenario.during(self, previous, now)
            before = self._lake_before(now)
            for when, name in ticks:
                if previous < when <= now:
                    runs, skipped = engine.tick_schedule(name, when)
                    instant.ticks.append(name if runs or not skipped else f"{name} (skipped)")
                    instant.runs += runs
            engine.wait_idle(self._watch)
            self._lake_after(before, now)
            self._tick_sensors(now, instant)
            instant.wall_s = round(time.monotonic() - started, 1)
            instant.load = load_average()[0]
            self.instants.append(instant)
            self.progress(self._line(instant))
            previous = now

    def _stop_at(self, last: datetime) -> None:
        """The wall budget is spent: the span played ends at the last instant; faults not yet injected are left out
        (those injected and not yet fixed stay, with their open alerts)."""
        self.progress(f"{self.scenario.case}: wall budget spent, the span played ends at {last:%Y-%m-%d %H:%M}")
        self.scenario.end = last
        self.scenario.faults = [f for f in self.scenario.faults if f.applied]

    def _tick_sensors(self, now: datetime, instant: Instant) -> None:
        """The sensors, in order, until none asks for a run (a run one of them asked for may need the next)."""
        for _ in range(6):
            new = []
            for name in self.scenario.sensors:
                new += self.engine.tick_sensor(name, now)
                self._note_alerts(now, instant)
            instant.runs += new
            if not new:
                return
            self.engine.wait_idle(self._watch)

    def _watch(self) -> None:
        for fault in self.scenario.faults:
            if fault.applied and fault.watch is not None and not fault.done_watching:
                fault.done_watching = fault.watch(self)

    def _note_alerts(self, now: datetime, instant: Instant) -> None:
        from lakehouse.common.alerts import read_alerts

        alerts = read_alerts(self.home / "ops.sqlite")
        for row in alerts.iter_rows(named=True):
            if row["evaluation_id"] not in self.alert_instants:
                self.alert_instants[row["evaluation_id"]] = now
                instant.alerts.append(row["evaluation_id"])
            if row["resolved_at"] and row["evaluation_id"] not in self.clear_instants:
                self.clear_instants[row["evaluation_id"]] = now
                instant.cleared.append(row["evaluation_id"])

    # ------------------------------------------------------------------ a poisoned file leaves the lake as it was

    def _lake_before(self, now: datetime) -> str | None:
        poisoned = [f for f in self.scenario.faults if f.kind == "poisoned" and f.at <= now < (f.fixed_at or now)]
        return lake_digest(self.home / "lake" / self.scenario.case) if poisoned else None

    def _lake_after(self, before: str | None, now: datetime) -> None:
        if before is None:
            return
        failed = [r for r in self.engine.runs() if r["at"] == now.isoformat() and r["status"] == "FAILURE"]
        if failed:
            after = lake_digest(self.home / "lake" / self.scenario.case)
            self.lake_checks.append(
                {"at": now.isoformat(), "refused_runs": [r["job"] for r in failed], "lake_unchanged": before == after}
            )

    def _line(self, instant: Instant) -> str:
        parts = [f"{instant.at:%Y-%m-%d %H:%M}", f"{len(instant.runs)} run(s)", f"{instant.wall_s:.0f} s"]
        if instant.ticks:
            parts.append("ticks " + ", ".join(instant.ticks))
        if instant.faults:
            parts.append("FAULT " + ", ".join(instant.faults))
        if instant.alerts:
            parts.append(f"{len(instant.alerts)} alert(s)")
        if instant.cleared:
            parts.append(f"{len(instant.cleared)} cleared")
        return f"{self.scenario.case} " + " | ".join(parts)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)
