"""The alert sensor on a real Dagster instance: cursor over finished runs, each failed evaluation
alerted exactly once, bursts read in full, only this code location's checks."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from lakehouse.common.alerts import open_alerts, read_alerts
from resources import AlertSinkResource, LakehouseResource
from sensors.alerts import asset_check_alerts, failed_evaluations
from tests.loopback import FakeServer, serve

pytestmark = pytest.mark.integration

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-02-01")


class ScoresConfig(dg.Config):
    volume_ok: bool = False


@dg.asset(
    key=["churn", "scores"],
    check_specs=[
        dg.AssetCheckSpec("volume", asset=["churn", "scores"]),
        dg.AssetCheckSpec("nulls", asset=["churn", "scores"]),
    ],
)
def scores(config: ScoresConfig):
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(
        check_name="volume",
        passed=config.volume_ok,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"value": 12, "threshold": "[100, 200]"},
        description="too few scores",
    )
    yield dg.AssetCheckResult(check_name="nulls", passed=True, metadata={"value": 0.0})


@dg.asset(
    key=["forecast", "daily"],
    partitions_def=DAYS,
    check_specs=[dg.AssetCheckSpec("gate", asset=["forecast", "daily"], blocking=True)],
)
def daily():
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(
        check_name="gate", passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata={"value": 0.5}
    )


@dg.asset(key=["elsewhere", "table"], check_specs=[dg.AssetCheckSpec("foreign", asset=["elsewhere", "table"])])
def foreign_asset():
    """Stands for another code location's asset: its checks are not this sensor's."""
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="foreign", passed=False)


DEFS = dg.Definitions(assets=[scores, daily], sensors=[asset_check_alerts])
CHECK_KEYS = DEFS.get_repository_def().asset_graph.asset_check_keys


@pytest.fixture
def instance(lakehouse_home: Path) -> Iterator[dg.DagsterInstance]:
    """The project's local instance (deploy/dagster.yaml) in a fresh home."""
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture
def webhook() -> Iterator[FakeServer]:
    with serve() as server:
        yield server


def _tick(
    instance, home: Path, webhook: FakeServer, cursor: str | None, definitions: dg.Definitions = DEFS
) -> dg.SensorResult:
    resources = {
        "lakehouse": LakehouseResource(home=str(home)),
        "alerts": AlertSinkResource(webhook_url=f"{webhook.url}/hook"),
    }
    context = dg.build_sensor_context(instance=instance, resources=resources, definitions=definitions, cursor=cursor)
    return asset_check_alerts(context)


def _volume_run(instance, ok: bool = False) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [scores], instance=instance, run_config=dg.RunConfig(ops={"churn__scores": ScoresConfig(volume_ok=ok)})
    )


def test_each_failed_evaluation_alerts_once_and_the_cursor_follows_finished_runs(instance, lakehouse_home, webhook):
    first = _volume_run(instance)
    gate = dg.materialize([daily], instance=instance, partition_key="2024-01-08", raise_on_error=False)
    assert first.success and not gate.success  # the blocking gate fails its run: RUN_FAILURE is read too
    _volume_run(instance, ok=True)  # nothing failed: no alert, and the first volume alert clears

    tick = _tick(instance, lakehouse_home, webhook, cursor=None)
    alerts = read_alerts(lakehouse_home / "ops.sqlite").sort("check_name")
    assert alerts["check_name"].to_list() == ["gate", "volume"]
    gate_alert, volume_alert = alerts.rows(named=True)
    assert (gate_alert["case_name"], gate_alert["asset_key"], gate_alert["partition"], gate_alert["severity"]) == (
        "forecast",
        "forecast/daily",
        "2024-01-08",
        "ERROR",
    )
    assert (
        volume_alert["case_name"],
        volume_alert["asset_key"],
        volume_alert["partition"],
        volume_alert["severity"],
    ) == ("churn", "churn/scores", None, "WARN")
    assert (
        volume_alert["value"] == 12.0
        and volume_alert["threshold"] == "[100, 200]"
        and volume_alert["description"] == "too few scores"
    )
    assert len(webhook.requests) == 2 and tick.skip_reason.skip_message == "2 new alerts, 1 cleared"
    assert tick.cursor is not None

    # Nothing finished since: the cursor stays, nothing is read again.
    again = _tick(instance, lakehouse_home, webhook, cursor=tick.cursor)
    assert again.cursor == tick.cursor and again.skip_reason.skip_message == "0 new alerts, 0 cleared"

    _volume_run(instance)
    after = _tick(instance, lakehouse_home, webhook, cursor=tick.cursor)
    assert int(after.cursor) > int(tick.cursor) and after.skip_reason.skip_message == "1 new alerts, 0 cleared"
    assert read_alerts(lakehouse_home / "ops.sqlite").height == 3 and len(webhook.requests) == 3

    # A sensor whose cursor was reset reads every run again, and still alerts nobody twice.
    reset = _tick(instance, lakehouse_home, webhook, cursor=None)
    assert reset.skip_reason.skip_message == "0 new alerts, 0 cleared" and reset.cursor == after.cursor
    assert read_alerts(lakehouse_home / "ops.sqlite").height == 3 and len(webhook.requests) == 3


def test_an_alert_clears_when_the_same_check_and_partition_passes_later(instance, lakehouse_home, webhook):
    failed = dg.materialize([daily], instance=instance, partition_key="2024-01-08", raise_on_error=False)
    dg.materialize([daily], instance=instance, partition_key="2024-01-09", raise_on_error=False)
    assert not failed.success
    _tick(instance, lakehouse_home, webhook, cursor=None)
    assert open_alerts(lakehouse_home / "ops.sqlite")["partition"].sort().to_list() == ["2024-01-08", "2024-01-09"]
    _volume_run(instance)
    later = _tick(instance, lakehouse_home, webhook, cursor=None)
    assert later.skip_reason.skip_message == "1 new alerts, 0 cleared"  # another check's pass clears nothing
    _volume_run(instance, ok=True)
    fixed = _tick(instance, lakehouse_home, webhook, cursor=None)
    assert fixed.skip_reason.skip_message == "0 new alerts, 1 cleared"
    still_open = open_alerts(lakehouse_home / "ops.sqlite")
    assert sorted(still_open["check_name"]) == ["gate", "gate"]  # the gate's partitions have not passed yet


def test_only_this_code_locations_checks_alert(instance, lakehouse_home, webhook):
    dg.materialize([foreign_asset], instance=instance)
    tick = _tick(instance, lakehouse_home, webhook, cursor=None)
    assert tick.skip_reason.skip_message == "0 new alerts, 0 cleared" and tick.cursor is not None
    assert read_alerts(lakehouse_home / "ops.sqlite").is_empty() and webhook.requests == []


def test_a_burst_of_failures_of_one_check_is_read_in_full():
    """60 failures of one check between two ticks all alert, in one tick or over several."""
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(60):
        _volume_run(instance)

    alerts, cursor = failed_evaluations(instance, CHECK_KEYS)
    assert len(alerts) == 60 and len({a.evaluation_id for a in alerts}) == 60
    assert {a.check_name for a in alerts} == {"volume"}

    # With fewer runs per tick, successive ticks read the same evaluations, each once.
    paged, page_cursor, ticks = [], None, 0
    while True:
        found, next_cursor = failed_evaluations(instance, CHECK_KEYS, page_cursor, runs_per_tick=7)
        if next_cursor == page_cursor:
            break
        paged, page_cursor, ticks = paged + found, next_cursor, ticks + 1
    assert ticks == 9 and page_cursor == cursor
    assert [a.evaluation_id for a in paged] == [a.evaluation_id for a in alerts]
    run_ids = [a.evaluation_id.split(":")[0] for a in alerts]
    assert run_ids == [
        r.dagster_run.run_id for r in instance.get_run_records(ascending=True)
    ]  # in the order the runs finished


class LoadConfig(dg.Config):
    refuse: bool = False


@dg.asset(key=["fraud", "transactions"], partitions_def=DAYS)
def day_load(config: LoadConfig):
    if config.refuse:
        raise ValueError("column 'amount': 1 value(s) below the minimum 0")


@dg.asset(key=["fraud", "transaction_features"], deps=[day_load])
def features():
    """Unpartitioned, in the day's run: Dagster plans it with the run's partitions (when the run's last asset is
    partitioned, dagster/_core/instance/runs/run_domain.py) and materializes it with none."""


def test_a_refused_day_alerts_for_an_unpartitioned_asset_once_and_its_next_materialization_clears_it(
    instance, lakehouse_home, webhook
):
    defs = dg.Definitions(assets=[day_load, features], sensors=[asset_check_alerts])

    def tick():
        return _tick(instance, lakehouse_home, webhook, None, defs)

    refused = dg.RunConfig(ops={"fraud__transactions": LoadConfig(refuse=True)})
    run = dg.materialize(
        [day_load, features], instance=instance, partition_key="2024-01-08", run_config=refused, raise_on_error=False
    )
    assert not run.success
    tick()
    opened = open_alerts(lakehouse_home / "ops.sqlite").sort("asset_key")
    assert opened.select("asset_key", "partition").rows() == [
        ("fraud/transaction_features", None),
        ("fraud/transactions", "2024-01-08"),
    ]
    dg.materialize([day_load, features], instance=instance, partition_key="2024-01-08")
    assert tick().skip_reason.skip_message == "0 new alerts, 2 cleared"
    assert open_alerts(lakehouse_home / "ops.sqlite").is_empty()


class ReportConfig(dg.Config):
    fail: bool = False


@dg.asset(key=["churn", "ab_test_roi"], output_required=False)
def roi_report(config: ReportConfig):
    """Needs a champion: with none it says so and skips (no output), a green run."""
    if config.fail:
        raise RuntimeError("worker killed")
    yield from ()  # no champion: no output


def test_a_failed_assets_alert_clears_when_a_green_run_skips_it_by_design(instance, lakehouse_home, webhook):
    """The churn replay's killed training left `ab_test_roi`'s failure alert open for good: its retry and every
    later training succeeded, but with no champion the report skips instead of materializing."""
    defs = dg.Definitions(assets=[roi_report], sensors=[asset_check_alerts])

    def tick():
        return _tick(instance, lakehouse_home, webhook, None, defs)

    failing = dg.RunConfig(ops={"churn__ab_test_roi": ReportConfig(fail=True)})
    assert not dg.materialize([roi_report], instance=instance, run_config=failing, raise_on_error=False).success
    tick()
    assert open_alerts(lakehouse_home / "ops.sqlite")["asset_key"].to_list() == ["churn/ab_test_roi"]
    skipped = dg.materialize([roi_report], instance=instance)
    assert skipped.success and not skipped.get_asset_materialization_events()
    assert tick().skip_reason.skip_message == "0 new alerts, 1 cleared"
    assert open_alerts(lakehouse_home / "ops.sqlite").is_empty()
