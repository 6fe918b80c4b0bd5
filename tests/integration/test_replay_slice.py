"""A short slice of the fraud replay (bench/replay), so the path cannot rot: a real dagster-daemon runs what the
real schedules and sensors ask for over one simulated day after a week of history, and a poisoned file is refused,
alerts, is fixed at noon, is loaded by the source-change sensor and clears its alerts.

It runs as `python -m bench.replay --case fraud --slice` (its own process: the code location reads the replay's
sources file when it loads) and reads the timeline the replay writes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 900  # a busy shared machine; an idle one takes about 3 minutes


@pytest.fixture(scope="module")
def timeline(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("replay") / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.replay", "--case", "fraud", "--slice", "--home", str(home)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return json.loads((home / "replay.json").read_text())


def _runs(timeline: dict, job: str) -> list[dict]:
    return [r for r in timeline["runs"] if r["job"] == job]


def test_every_run_was_asked_for_by_a_schedule_a_sensor_or_day_zero_and_ran_on_the_daemon(timeline):
    kinds = {r["kind"] for r in timeline["runs"]}
    assert kinds <= {"bootstrap", "schedule", "sensor", "reload", "catch-up", "retry"}
    assert {"bootstrap", "schedule"} <= kinds
    assert all(r["seconds"] is not None for r in timeline["runs"])  # launched and finished by the daemon


def test_the_poisoned_file_is_refused_with_the_lake_unchanged_and_explained(timeline):
    refused = [r for r in _runs(timeline, "fraud_daily_ingest") if r["status"] == "FAILURE"]
    assert len(refused) == 1 and refused[0]["partition"] == "2023-12-31"
    assert "amount" in refused[0]["failure"] and refused[0]["explained_by"] == "poisoned file"
    assert timeline["lake_checks"] and all(c["lake_unchanged"] for c in timeline["lake_checks"])
    assert timeline["unexplained_failed_runs"] == 0


def test_the_fault_alerts_within_its_tick_and_clears_once_the_file_is_fixed(timeline):
    [fault] = timeline["faults"]
    assert fault["detected_in_time"] and fault["cleared"] and fault["alerts"] >= 2
    checks = {a["check_name"] for a in timeline["alerts"]}
    assert {"freshness", "materialization_failed"} <= checks
    assert timeline["false_alerts"] == 0 and timeline["alerts_open_at_end"] == 0
    reloads = [r for r in timeline["runs"] if r["kind"] in ("catch-up", "reload")]
    assert reloads and all(r["status"] == "SUCCESS" and r["partition"] == "2023-12-31" for r in reloads)


def test_deadlines_are_met_on_the_days_without_a_fault_and_no_pool_slot_is_held(timeline):
    met = {d["period"]: d["met"] for d in timeline["freshness"]}
    assert met == {"2023-12-31": False, "2024-01-01": True}
    assert timeline["deadlines_missed_without_injected_delay"] == 0
    assert timeline["pool_slots_held_at_end"] == 0
