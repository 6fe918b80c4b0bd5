"""A run killed while it holds the `duckdb` pool slot no longer blocks the pool.

A real dagster-daemon runs against a fresh DAGSTER_HOME holding the repo's deploy/dagster.yaml
and a two-asset code location (`pool_location.py`). The first run opens the DuckDB warehouse
and blocks; the second run's DuckDB asset waits for the slot. The first run's worker and step
are killed (SIGKILL, as the out-of-memory killer would): its code server marks it failed, run
monitoring frees the slot it held, and the waiting asset runs. (Without `run_monitoring` the
failed run keeps the slot and the second run stays queued for good.)
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.common import DUCKDB_POOL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOCATION = Path(__file__).with_name("pool_location.py")
BIN = Path(sys.executable).parent
# Generous on a busy machine; the test waits on conditions and normally ends well before.
TIMEOUT_S = 150.0
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class Daemon:
    """`dagster-daemon run` on the test's code location, in its own session so it can be stopped whole."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-f", str(LOCATION), "-d", str(ROOT)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        finally:
            # The code server and run workers it started share its process group: none outlives the test.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def launch(job: str, env: dict[str, str]) -> tuple[str, subprocess.Popen]:
    """`dagster job launch`: submits a run of `job` to the instance's queue; its id and the command."""
    run_id = str(uuid.uuid4())
    command = [
        str(BIN / "dagster"),
        "job",
        "launch",
        "-f",
        str(LOCATION),
        "-d",
        str(ROOT),
        "-j",
        job,
        "--run-id",
        run_id,
    ]
    return run_id, subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def submitted(command: subprocess.Popen) -> None:
    output, _ = command.communicate(timeout=120)
    assert command.returncode == 0, output


def wait_for(condition, what: str, deadline: float, daemon: Daemon):
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; dagster-daemon log:\n{daemon.tail()}")


def test_a_killed_run_frees_its_duckdb_slot_and_the_next_duckdb_asset_runs(lakehouse_home, tmp_path):
    deadline = time.monotonic() + TIMEOUT_S
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with dg.DagsterInstance.get() as instance:
        assert (
            instance.run_monitoring_enabled and instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        )

        def pool():
            return instance.event_log_storage.get_concurrency_info(DUCKDB_POOL)

        def status(run_id: str) -> dg.DagsterRunStatus | None:
            run = instance.get_run_by_id(run_id)
            return run.status if run else None

        def pid(run_id: str, event_type: dg.DagsterEventType) -> int | None:
            events = instance.all_logs(run_id, of_type=event_type)
            return events[0].dagster_event.pid if events else None

        held, command = launch("hold", env)
        daemon = Daemon(env, tmp_path / "daemon.log")  # starts while the run is being submitted
        try:
            submitted(command)
            wait_for(
                lambda: held in pool().active_run_ids and pid(held, dg.DagsterEventType.STEP_START),
                "the first run to hold the duckdb slot",
                deadline,
                daemon,
            )
            # The queue keeps a run whose DuckDB step cannot get the slot (block_op_concurrency_limited_runs).
            following, command = launch("next", env)
            submitted(command)
            wait_for(
                lambda: f"Run {following} is blocked by global concurrency limits" in daemon.log.read_text(),
                "the second run to wait for the duckdb slot",
                deadline,
                daemon,
            )

            # The first run dies mid-step: its worker and its step process, as an OOM kill would.
            os.kill(pid(held, dg.DagsterEventType.STEP_START), signal.SIGKILL)
            os.kill(pid(held, dg.DagsterEventType.RUN_START), signal.SIGKILL)

            wait_for(
                lambda: status(held) == dg.DagsterRunStatus.FAILURE,
                "the killed run to be marked failed",
                deadline,
                daemon,
            )
            wait_for(lambda: status(following) in FINISHED, "the next DuckDB asset's run to finish", deadline, daemon)
            assert status(following) == dg.DagsterRunStatus.SUCCESS, daemon.tail()
        finally:
            daemon.stop()

        assert pool().claimed_slots == []
    with duckdb.connect(str(lakehouse_home / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("SELECT x FROM written_after_the_kill").fetchall() == [(1,)]
