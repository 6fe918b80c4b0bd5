"""A weekly user file, native: one row per store x SKU x week (weeks ending on Sunday), through the
documented path. Horizons, seasonal periods, lags and metric names follow the frequency, and the
accuracy monitoring compares weeks with weeks (no false alert)."""

import json
from datetime import timedelta

import dagster as dg
import polars as pl
import pytest

from lakehouse.common.lake import Lake
from lakehouse.forecast import world as gen
from tests.integration.forecast_helpers import MASTER, materialize, store_keys, write_source

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SMALL = {
    "objective": "tweedie",
    "n_estimators": 60,
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_child_samples": 10,
    "n_jobs": 1,
    "verbosity": -1,
}


def test_a_weekly_file_forecasts_weeks_through_the_graph_without_a_false_alert(
    tmp_path, lakehouse_home, monkeypatch, redis_url
):
    world = gen.WorldConfig(stores=2, skus=4, seed=5)
    # 8 series over 8 weeks judge no model: the gate is asked only for the champion's tolerance here.
    settings = {
        "frequency": "W",
        "evaluation": {"test": "8w", "validation": "8w"},
        "models": {"lightgbm": SMALL},
        "gate": {"beat_seasonal_naive": False},
    }
    folder = write_source(tmp_path / "user", world, monkeypatch, settings, weekly=True)
    last = pl.read_csv(folder / "sales.csv", try_parse_dates=True)["date"].max()
    monkeypatch.setenv("LAKEHOUSE_REDIS_URL", redis_url)
    instance = dg.DagsterInstance.get()
    assert materialize(lakehouse_home, MASTER, instance=instance).success
    keys = store_keys(instance)
    every = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    assert materialize(lakehouse_home, "key:forecast/sales", instance=instance, tags=every).success
    refit = materialize(
        lakehouse_home, "key:forecast/model or key:forecast/backtest or key:forecast/champion_model", instance=instance
    )
    assert refit.success
    model = {k: v.value for k, v in refit.asset_materializations_for_node("forecast__model")[0].metadata.items()}
    backtest = {k: v.value for k, v in refit.asset_materializations_for_node("forecast__backtest")[0].metadata.items()}
    assert model["frequency"] == "W-SUN"
    assert "wape_w1" in backtest and not any("d7" in k for k in backtest)
    for origin in (last - timedelta(weeks=1), last):
        config = dg.RunConfig({"forecast__store_forecasts": {"config": {"origin": origin.isoformat()}}})
        assert materialize(
            lakehouse_home, "key:forecast/store_forecasts", instance=instance, tags=every, run_config=config
        ).success
    monitored = materialize(lakehouse_home, "key:forecast/live_accuracy", instance=instance)
    drift = monitored.get_asset_check_evaluations()[0]
    assert drift.passed, drift.description
    assert drift.metadata["value"].value < 60, "weekly MAPE in percent, weeks against weeks"
    lake = Lake(str(lakehouse_home / "lake"))
    forecasts = lake.read_partitions("forecast", "store_forecasts", "origin", [last.isoformat()])
    assert forecasts.group_by("unique_id").len()["len"].unique().to_list() == [2]
    assert {d.weekday() for d in forecasts["ds"]} == {6}
    assert json.dumps(backtest["window"])
