"""The churn usage-volume check through the weekly scoring step: on a tiny world whose usage halves for a week (the
replay's "distribution shift" fault) the week after the shift alerts through the alert sensor, the week before does
not. The model is a stand-in (a constant score): the check reads the staged raw usage, not the model."""

from datetime import timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest

from lakehouse.churn.pipeline import ServingModel
from lakehouse.churn.world import WorldConfig, generate_world
from lakehouse.common.alerts import read_alerts
from lakehouse.common.promotion import ModelChoice
from resources import LakehouseResource, default_resources
from tests.integration.churn_helpers import build_features, load_raw, run, write_source

pytestmark = pytest.mark.integration

SMALL = WorldConfig(customers=150, years=0.5, seed=11)  # 26 weeks: the checked weeks have their 8 weeks before


class ConstantBooster:
    """Scores every customer 0.1 (low tier: no SHAP reasons) from one real feature."""

    def feature_name(self) -> list[str]:
        return ["tenure_days"]

    def predict(self, x, **_):
        return np.full(len(x), 0.1)


def _usage_volume(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "usage_volume")


def test_a_halved_week_of_usage_alerts_on_usage_volume_and_the_week_before_does_not(
    lakehouse_home, tmp_path, monkeypatch
):
    shifted = SMALL.end_date - timedelta(weeks=2)  # a Monday: the first snapshot after the halved week
    steady = shifted - timedelta(weeks=1)
    world = generate_world(SMALL)
    halved_week = pl.col("activity_date").is_between(steady, shifted - timedelta(days=1))
    dropped = pl.struct("customer_id", "activity_date").hash(7) % 2 == 0
    world["usage_daily"] = world["usage_daily"].filter(~(halved_week & dropped))

    instance = dg.DagsterInstance.from_config(str(lakehouse_home / "dagster"))
    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(lakehouse_home))}
    load_raw(instance, resources, write_source(world, tmp_path / "source"))
    build_features(instance, resources, steady.isoformat(), shifted.isoformat())
    model = ServingModel(ConstantBooster(), ModelChoice("1", "challenger", shadow=True, note="stand-in"))
    monkeypatch.setattr("assets.churn.scoring.serving_model", lambda registry, settings: model)

    before = _usage_volume(run(instance, resources, "key:churn/churn_scores", partition_key=steady.isoformat()))
    assert before.passed and before.metadata["value"].value > 0.8 and before.metadata["trailing_weeks"].value == 8
    after = _usage_volume(run(instance, resources, "key:churn/churn_scores", partition_key=shifted.isoformat()))
    assert not after.passed and after.severity == dg.AssetCheckSeverity.WARN
    assert after.metadata["value"].value < 0.6 and after.metadata["p_value"].value < 1e-6
    assert after.metadata["week"].value == f"{steady}..{shifted - timedelta(days=1)}"

    import definitions
    from sensors.alerts import asset_check_alerts

    asset_check_alerts(dg.build_sensor_context(instance=instance, resources=resources, definitions=definitions.defs()))
    alerts = read_alerts(lakehouse_home / "ops.sqlite").filter(pl.col("check_name") == "usage_volume")
    (alert,) = alerts.iter_rows(named=True)
    assert alert["asset_key"] == "churn/churn_scores" and alert["partition"] == shifted.isoformat()
    assert alert["severity"] == "WARN" and alert["threshold"].startswith(">= 0.7 x")
