"""Months in production, replayed: a fresh home's Dagster instance driven through simulated time the way the
daemon would drive it.

At each simulated instant the replay (1) lets the case's source files grow to what had arrived by then, with the
faults due applied to them, (2) runs the scenario's own activity of the period (live traffic through a service),
(3) evaluates the real schedule definitions whose cron ticks fell since the previous instant
(`build_schedule_context(scheduled_execution_time=...)`), (4) submits their run requests to the instance's queue
as the scheduler does, then (5) evaluates the real sensors (cursors kept between ticks) until they ask for
nothing more. A real `dagster-daemon` dequeues the runs (run queue, pools, tag concurrency limits), launches each
in its own process with the job's executor, watches them (run monitoring frees the slots of a killed run) and
retries runs whose worker died (run retries). The clock moves on once the instance is idle. The runs land in the
instance `make ui` opens, so the UI shows the replay.

Only time is simulated: data, schedules, sensors, executors, pools, retries, checks and alerts are the
production ones. Sensors the daemon would tick on its own clock are stopped in the instance and ticked here on
the simulated one; schedules stay stopped in the instance for the same reason.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from bench.common import ROOT

BIN = Path(sys.executable).parent
ORIGIN_TAG = "replay/origin"  # schedule:<name>, sensor:<name>, bootstrap; retries copy their parent's tags
AT_TAG = "replay/at"  # the simulated instant the run was requested at
PARENT_TAG = "dagster/parent_run_id"
RETRY_TAG = "dagster/retry_number"
WILL_RETRY_TAG = "dagster/will_retry"
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
LOCATION = "definitions"
# Latency only: the queue is read every second instead of every five, so a replay of months does not spend
# hours waiting for the next dequeue. Everything else is deploy/dagster.yaml as it is.
DEQUEUE_INTERVAL_S = 1


@dataclass
class Instant:
    """What happened at one simulated instant."""

    at: datetime
    ticks: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)  # evaluation ids of the alerts recorded at this instant
    cleared: list[str] = field(default_factory=list)  # evaluation ids of the alerts cleared at this instant
    wall_s: float = 0.0
    load: float = 0.0  # the machine's 1-minute load average once the instant's work was done


class Process:
    """A server process in its own session, so it stops whole (its run workers with it)."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path):
        self.log = log
        with log.open("a") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


class CodeServer(Process):
    """The code location as a long-lived gRPC server (as deployed in production), shared by the daemon and the
    replay: loaded once, and never shut down for a missed heartbeat when the machine is busy. Runs are launched
    from it, each in its own process."""

    def __init__(self, env: dict[str, str], log: Path, port: int):
        self.port = port
        command = [sys.executable, "-m", "dagster", "api", "grpc", "-m", "definitions", "-d", str(ROOT)]
        super().__init__([*command, "-p", str(port), "--location-name", LOCATION], env, log)

    def wait_ready(self, timeout_s: float = 900) -> None:
        from dagster._grpc.client import DagsterGrpcClient

        client = DagsterGrpcClient(port=self.port, host="localhost")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the code server stopped:\n{self.tail()}")
            with contextlib.suppress(Exception):
                client.ping("replay")
                return
            time.sleep(1)
        raise TimeoutError(f"the code server did not answer within {timeout_s:.0f} s:\n{self.tail()}")


def instance_yaml(dagster_home: Path) -> dict:
    """deploy/dagster.yaml (pools, run queue, run monitoring, run retries) with a faster dequeue."""
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    config["run_queue"] = {"dequeue_interval_seconds": DEQUEUE_INTERVAL_S}
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


class Engine:
    """A Dagster instance in `env`'s home, its code location, and a daemon; the clock is the caller's."""

    def __init__(self, env: dict[str, str], home: Path, progress: Callable[[str], None] = print):
        self.env = env
        self.home = home
        self.progress = progress
        self.cursors: dict[str, str | None] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Engine:
        import dagster as dg
        from dagster._cli.workspace.cli_target import WorkspaceOpts, workspace_opts_to_load_target
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster.version import __version__

        import definitions
        from lakehouse.common.local_servers import free_port

        self.instance = self._stack.enter_context(dg.DagsterInstance.get())
        self.defs = definitions.defs()
        self.repository = self.defs.get_repository_def()
        server = CodeServer(self.env, self.home / "code_server.log", free_port())
        self._stack.callback(server.stop)
        workspace = self.home / "workspace.yaml"
        workspace.write_text(
            yaml.safe_dump(
                {"load_from": [{"grpc_server": {"host": "localhost", "port": server.port, "location_name": LOCATION}}]}
            )
        )
        server.wait_ready()
        target = workspace_opts_to_load_target(WorkspaceOpts(workspace=(str(workspace),)), False)
        self.process_context = self._stack.enter_context(
            WorkspaceProcessContext(
                instance=self.instance, version=__version__, read_only=False, workspace_load_target=target
            )
        )
        self._stop_daemon_ticks()
        self.daemon = Process(
            [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], self.env, self.home / "daemon.log"
        )
        self._stack.callback(self.daemon.stop)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    # ------------------------------------------------------------------ code location

    def workspace(self):
        return self.process_context.create_request_context()

    def location(self):
        workspace = self.workspace()
        (name,) = workspace.code_location_names
        if workspace.has_code_location_error(name):
            raise RuntimeError(f"the code location does not load: {workspace.get_code_location_error(name)}")
        location = workspace.get_code_location(name)
        (repository,) = location.get_repositories().values()
        return workspace, location, repository

    def _stop_daemon_ticks(self) -> None:
        """Sensors running by default would tick on the daemon's wall clock: the replay ticks them instead."""
        _, _, repository = self.location()
        for sensor in repository.get_sensors():
            self.instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)
        for schedule in repository.get_schedules():
            self.instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)

    # ------------------------------------------------------------------ schedules, sensors, runs

    def schedule_ticks(self, names: list[str], start: datetime, end: datetime) -> list[tuple[datetime, str]]:
        """Every tick of the named schedules in (start, end], in time order."""
        from dagster._utils.schedules import cron_string_iterator

        ticks = []
        for name in names:
            schedule = self.repository.get_schedule_def(name)
            crons = [schedule.cron_schedule] if isinstance(schedule.cron_schedule, str) else schedule.cron_schedule
            for cron in crons:
                for when in cron_string_iterator(start.timestamp() + 1, cron, schedule.execution_timezone or "UTC"):
                    if when > end:
                        break
                    ticks.append((when, name))
        return sorted(ticks)

    def tick_schedule(self, name: str, when: datetime) -> tuple[list[str], str | None]:
        """One evaluation of a schedule at its tick, its runs submitted; (run ids, skip reason)."""
        import dagster as dg

        schedule = self.repository.get_schedule_def(name)
        with dg.build_schedule_context(
            instance=self.instance, scheduled_execution_time=when, repository_def=self.repository
        ) as context:
            data = schedule.evaluate_tick(context)
        runs = []
        for request in data.run_requests or []:
            if request.run_key and self._existing(request.run_key, {"dagster/schedule_name": name}):
                continue
            tags = {"dagster/scheduled_execution_time": when.astimezone(UTC).isoformat()}
            runs.append(self.submit(schedule.job_name, request, f"schedule:{name}", when, tags))
        return runs, data.skip_message

    def tick_sensor(self, name: str, when: datetime) -> list[str]:
        """One evaluation of a sensor (its cursor kept between ticks), its new run requests submitted."""
        import dagster as dg

        sensor = self.repository.get_sensor_def(name)
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursors.get(name),
            definitions=self.defs,
            resources=self.defs.resources,
            sensor_name=name,
        )
        data = sensor.evaluate_tick(context)
        self.cursors[name] = data.cursor
        for request in data.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        runs = []
        for request in data.run_requests or []:
            if request.run_key and self._existing(request.run_key, {"dagster/sensor_name": name}):
                continue  # the daemon skips a run key a sensor already requested
            job = request.job_name or (sensor.job_name if sensor.has_jobs else None) or "__ASSET_JOB"
            runs.append(self.submit(job, request, f"sensor:{name}", when, {"dagster/sensor_name": name}))
        return runs

    def _existing(self, run_key: str, tags: dict[str, str]) -> bool:
        import dagster as dg

        return bool(self.instance.get_runs(dg.RunsFilter(tags={"dagster/run_key": run_key, **tags}), limit=1))

    def submit(self, job_name: str, request, origin: str, when: datetime, extra_tags: dict | None = None) -> str:
        """Create a run for a run request and put it in the instance's queue, as the scheduler and the sensor
        daemon do (partition tags resolved, the job's tags, the request's tags)."""
        from dagster._core.definitions.selector import JobSubsetSelector
        from dagster._core.instance.types import CachingDynamicPartitionsLoader
        from dagster._core.storage.dagster_run import DagsterRunStatus

        if request.partition_key and not request.has_resolved_partition():
            request = request.with_resolved_tags_and_config(
                target_definition=self.repository.get_job(job_name),
                dynamic_partitions_requests=[],
                dynamic_partitions_store=CachingDynamicPartitionsLoader(self.instance),
            )
        workspace, location, repository = self.location()
        selector = JobSubsetSelector(
            location_name=location.name,
            repository_name=repository.name,
            job_name=job_name,
            op_selection=None,
            asset_selection=request.asset_selection,
            asset_check_selection=request.asset_check_keys,
        )
        job = location.get_job(selector)
        plan = location.get_execution_plan(job, request.run_config, step_keys_to_execute=None, known_state=None)
        tags = {**(job.run_tags or {}), **(request.tags or {}), **(extra_tags or {})}
        tags |= {ORIGIN_TAG: origin, AT_TAG: when.isoformat()}
        if request.run_key:
            tags["dagster/run_key"] = request.run_key
        run = self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=request.run_config,
            resolved_op_selection=job.resolved_op_selection,
            step_keys_to_execute=None,
            op_selection=None,
            status=DagsterRunStatus.NOT_STARTED,
            root_run_id=None,
            parent_run_id=None,
            tags=tags,
            job_snapshot=job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=job.parent_job_snapshot,
            remote_job_origin=job.get_remote_origin(),
            job_code_origin=job.get_python_origin(),
            asset_selection=frozenset(request.asset_selection) if request.asset_selection is not None else None,
            asset_check_selection=(
                frozenset(request.asset_check_keys) if request.asset_check_keys is not None else None
            ),
            asset_graph=repository.asset_graph,
        )
        self.instance.submit_run(run.run_id, workspace)
        return run.run_id

    # ------------------------------------------------------------------ waiting

    def busy(self) -> list:
        from dagster import DagsterRunStatus, RunsFilter

        unfinished = [s for s in DagsterRunStatus if s.value not in FINISHED]
        return self.instance.get_runs(RunsFilter(statuses=unfinished))

    def pending_retries(self) -> list[str]:
        """Failed runs the daemon said it will retry, whose retry is not created yet."""
        import dagster as dg

        failed = self.instance.get_runs(
            dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], tags={WILL_RETRY_TAG: "true"})
        )
        pending = []
        for run in failed:
            if not self.instance.get_runs(dg.RunsFilter(tags={PARENT_TAG: run.run_id}), limit=1):
                pending.append(run.run_id)
        return pending

    def wait_idle(self, watch: Callable[[], None] | None = None, timeout_s: float = 3600) -> None:
        """Until no run is queued, starting or running and no retry is due; `watch` is called while waiting
        (a fault that acts on a running run)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if watch is not None:
                watch()
            if not self.busy() and not self.pending_retries():
                return
            if not self.daemon.alive():
                raise RuntimeError(f"dagster-daemon stopped; its log:\n{self.daemon.tail()}")
            time.sleep(0.5)
        raise TimeoutError(f"runs still busy after {timeout_s:.0f} s; dagster-daemon log:\n{self.daemon.tail()}")

    # ------------------------------------------------------------------ inspection

    def runs(self) -> list[dict]:
        """Every run of the instance in creation order: job, partition, origin, status, duration."""
        rows = []
        for record in self.instance.get_run_records(ascending=True):
            run = record.dagster_run
            retry = run.tags.get(RETRY_TAG)
            origin = run.tags.get(ORIGIN_TAG, "manual")
            partition = run.tags.get("dagster/partition")
            start, end = (run.tags.get(f"dagster/asset_partition_range_{e}") for e in ("start", "end"))
            rows.append(
                {
                    "run_id": run.run_id,
                    "job": run.job_name,
                    "partition": partition or (f"{start}...{end}" if start else None),
                    "origin": f"retry {retry} of {origin}" if retry else origin,
                    "at": run.tags.get(AT_TAG),
                    "status": run.status.value,
                    "seconds": round(record.end_time - record.start_time, 1)
                    if record.end_time and record.start_time
                    else None,
                    "parent": run.tags.get(PARENT_TAG),
                    "will_retry": run.tags.get(WILL_RETRY_TAG) == "true",
                    "failure": self.failure(run.run_id) if run.status.value == "FAILURE" else None,
                }
            )
        return rows

    def failure(self, run_id: str) -> str:
        """The first error of a failed run, in one line."""
        import dagster as dg

        for event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
            for record in self.instance.get_records_for_run(run_id, of_type=event_type).records:
                event = record.event_log_entry.dagster_event
                error = getattr(event.event_specific_data, "error", None)
                while error is not None and error.cause is not None:  # the user's error, not Dagster's wrapper
                    error = error.cause
                text = (error.message if error else event.message) or record.event_log_entry.user_message
                if text:
                    return " ".join(text.split())[:400]
        return "no error recorded"

    def pids(self, run_id: str, step: str) -> tuple[int | None, int | None]:
        """(the run worker's pid, the pid of the step once it has started)."""
        import dagster as dg

        def pid(event_type, step_key: str | None = None) -> int | None:
            for record in reversed(self.instance.get_records_for_run(run_id, of_type=event_type).records):
                event = record.event_log_entry.dagster_event
                if step_key is None or event.step_key == step_key:
                    return event.pid
            return None

        return pid(dg.DagsterEventType.RUN_START), pid(dg.DagsterEventType.STEP_START, step)

    def pool_slots_held(self) -> dict[str, int]:
        storage = self.instance.event_log_storage
        return {key: len(storage.get_concurrency_info(key).claimed_slots) for key in storage.get_concurrency_keys()}
