"""The churn feature-drift check on a tiny world whose customers' usage halves for a week (the replay's
"distribution shift" fault): with no champion the scored week is compared with the weeks before it and alerts
through the alert sensor; the week before the shift does not; once a champion exists its reference weeks are
the comparison."""

from datetime import timedelta

import dagster as dg
import polars as pl
import pytest

from lakehouse.common.alerts import read_alerts
from resources import LakehouseResource, default_resources
from tests.integration.churn_helpers import TINY, build_features, load_raw, mondays, run, tiny_world, write_source

pytestmark = pytest.mark.integration

TRAINING = "key:churn/churn_labels or key:churn/training_set or key:churn/model or key:churn/champion_model"


def _drift(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "feature_drift")


def _alerts(instance, resources, home) -> pl.DataFrame:
    """One tick of the alert sensor over every finished run, and the alerts table it wrote."""
    import definitions
    from sensors.alerts import asset_check_alerts

    asset_check_alerts(dg.build_sensor_context(instance=instance, resources=resources, definitions=definitions.defs()))
    return read_alerts(home / "ops.sqlite")


def test_usage_halved_alerts_on_feature_drift_and_a_steady_week_does_not(lakehouse_home, tmp_path, monkeypatch):
    shifted = TINY.end_date - timedelta(weeks=2)  # a Monday: the first snapshot that sees the halved week
    steady = shifted - timedelta(weeks=1)
    world = tiny_world()
    usage = world["usage_daily"]
    halved_week = pl.col("activity_date").is_between(steady, shifted - timedelta(days=1))
    dropped = pl.struct("customer_id", "activity_date").hash(7) % 2 == 0
    world["usage_daily"] = usage.filter(~(halved_week & dropped))

    instance = dg.DagsterInstance.from_config(str(lakehouse_home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(lakehouse_home))}
    load_raw(instance, resources, write_source(world, tmp_path / "source"))
    weeks = mondays(TINY.first_snapshot, TINY.end_date)
    build_features(instance, resources, weeks[0], weeks[-1])

    # No champion: the gate refuses, the challenger scores in shadow, the reference is the weeks before.
    monkeypatch.setenv("LAKEHOUSE_CHURN_GATE__MIN_AUC_PR", "0.99")
    assert run(instance, resources, TRAINING).success
    before = _drift(run(instance, resources, "key:churn/churn_scores", partition_key=steady.isoformat()))
    assert before.passed and "no champion yet" in before.metadata["reference"].value
    after = _drift(run(instance, resources, "key:churn/churn_scores", partition_key=shifted.isoformat()))
    assert not after.passed and after.severity == dg.AssetCheckSeverity.WARN
    drifted = set(after.metadata["drifted_features"].value.split(", "))
    assert drifted & {"usage_trend", "days_since_last_login", "active_days_28d", "logins_28d", "minutes_28d"}
    assert after.metadata["value"].value > 0.2

    alerts = _alerts(instance, resources, lakehouse_home).filter(pl.col("check_name") == "feature_drift")
    (alert,) = alerts.iter_rows(named=True)
    assert alert["asset_key"] == "churn/churn_scores" and alert["partition"] == shifted.isoformat()
    assert alert["severity"] == "WARN" and alert["threshold"].startswith("KS <= 0.2")

    # A champion: its reference weeks (the last of its test period, kept at training) are the comparison.
    monkeypatch.setenv("LAKEHOUSE_CHURN_GATE__MIN_AUC_PR", "0")
    monkeypatch.setenv("LAKEHOUSE_CHURN_GATE__MIN_RECALL_TOP", "0")
    assert run(instance, resources, TRAINING).success
    with_champion = _drift(run(instance, resources, "key:churn/churn_scores", partition_key=steady.isoformat()))
    assert with_champion.passed and with_champion.metadata["reference"].value.startswith("champion v2's")
