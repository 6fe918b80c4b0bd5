"""The production instance config (deploy/dagster.prod.yaml) against a real PostgreSQL server.

Needs a server on 127.0.0.1:5432 that lets user ``postgres`` in without a password (trust auth);
skipped when nothing listens there. Each run works in a fresh ``dagster_test_<hex>`` database that
is dropped at the end.
"""

import shutil
import socket
import uuid
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from dagster._core.instance.config import PoolGranularity
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from sensors.alerts import failed_evaluations

pytestmark = pytest.mark.integration

PG_HOST, PG_PORT, PG_USER, PG_ADMIN_DB = "127.0.0.1", 5432, "postgres", "postgres"
PROD_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "dagster.prod.yaml"
TEST_POOL = "lakehouse_test_pool"


def _connect(dbname: str):
    return psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, connect_timeout=5)


@pytest.fixture
def pg_database():
    """A fresh, empty database; dropped (after terminating its connections) when the test ends."""
    try:
        socket.create_connection((PG_HOST, PG_PORT), timeout=3).close()
    except OSError as exc:
        pytest.skip(f"no PostgreSQL server reachable at {PG_HOST}:{PG_PORT} ({exc}); start one to run this test")
    # A server that listens but refuses user postgres is a setup error, not a reason to skip.
    admin = _connect(PG_ADMIN_DB)
    admin.autocommit = True
    name = f"dagster_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture
def prod_instance(pg_database, tmp_path, monkeypatch):
    """DagsterInstance.from_config on a DAGSTER_HOME holding a copy of deploy/dagster.prod.yaml."""
    monkeypatch.setenv("DAGSTER_PG_HOST", PG_HOST)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(PG_PORT))
    monkeypatch.setenv("DAGSTER_PG_USER", PG_USER)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused-with-trust-auth")
    monkeypatch.setenv("DAGSTER_PG_DB", pg_database)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROD_CONFIG, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    missing_driver = None
    try:
        instance = dg.DagsterInstance.from_config(str(home))
    except ModuleNotFoundError as exc:
        if exc.name != "psycopg":
            raise
        missing_driver = exc
    if missing_driver is not None:
        import sqlalchemy

        pytest.fail(
            f"{PROD_CONFIG.name} cannot open PostgreSQL: SQLAlchemy {sqlalchemy.__version__} maps postgresql:// to the "
            "psycopg (v3) driver, which is not installed (only psycopg2 is). Add `scheme: postgresql+psycopg2` "
            "under storage.postgres.postgres_db (or install psycopg).",
            pytrace=False,
        )
    try:
        yield instance
    finally:
        instance.dispose()


@dg.asset
def pg_source() -> int:
    return 41


@dg.asset(pool=TEST_POOL)
def pg_answer(pg_source: int) -> int:
    return pg_source + 1


@dg.asset_check(asset=pg_answer)
def pg_answer_is_zero(pg_answer: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=pg_answer == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"value": pg_answer},
    )


def test_prod_instance_stores_runs_events_and_checks_in_postgres(prod_instance, pg_database):
    instance = prod_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"

    result = dg.materialize([pg_source, pg_answer, pg_answer_is_zero], instance=instance)
    # A WARN check that fails does not fail the run.
    assert result.success
    run_id = result.run_id

    # The run, through the instance and straight from the database.
    runs = instance.get_runs()
    assert [r.run_id for r in runs] == [run_id]
    assert runs[0].status == dg.DagsterRunStatus.SUCCESS
    with _connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE run_id = %s", (run_id,))
        assert cur.fetchone()[0] > 0
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,))
        assert cur.fetchone()[0] > 0
    conn.close()

    # Materializations.
    for asset in (pg_source, pg_answer):
        event = instance.get_latest_materialization_event(asset.key)
        assert event is not None, f"no materialization stored for {asset.key.to_user_string()}"
        assert event.run_id == run_id

    # The failed check evaluation reads back with its severity and metadata.
    check_key = dg.AssetCheckKey(pg_answer.key, "pg_answer_is_zero")
    history = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=10)
    assert len(history) == 1
    record = history[0]
    assert record.run_id == run_id
    assert record.status == AssetCheckExecutionRecordStatus.FAILED
    evaluation = record.event.asset_check_evaluation
    assert evaluation is not None
    assert evaluation.passed is False
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["value"].value == 42

    # The alert sensor reads it through its cursor over finished runs, once.
    alerts, cursor = failed_evaluations(instance, {check_key})
    assert [(a.check_name, a.severity, a.value) for a in alerts] == [("pg_answer_is_zero", "WARN", 42.0)]
    assert failed_evaluations(instance, {check_key}, cursor) == ([], cursor)


def test_prod_instance_loads_the_pool_config(prod_instance):
    instance = prod_instance
    concurrency = instance.get_concurrency_config()
    assert concurrency.pool_config.default_pool_limit == 1
    assert concurrency.pool_config.pool_granularity == PoolGranularity.OP
    assert instance.event_log_storage.get_pool_config().default_pool_limit == 1

    # A pool nobody has configured gets the default limit, and a run in it frees its slot.
    result = dg.materialize([pg_source, pg_answer, pg_answer_is_zero], instance=instance)
    assert result.success
    info = instance.event_log_storage.get_concurrency_info(TEST_POOL)
    assert info.limit == 1
    assert info.claimed_slots == []


def test_prod_instance_monitors_runs(prod_instance):
    """Run monitoring frees the pool slots a dead run still holds (see test_run_monitoring.py)."""
    assert prod_instance.run_monitoring_enabled
    assert prod_instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
