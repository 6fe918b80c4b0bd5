"""The whole forecast graph, end to end, as the demo runs it on a small chain (the demo's stores, few SKUs),
then what the schedules, the sensor, the gate and the CLI do with it."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta

import dagster as dg
import polars as pl
import pytest
import redis

from lakehouse.common import promotion
from lakehouse.common.registry import CHAMPION
from lakehouse.forecast.publish import current
from lakehouse.forecast.reconcile import METHODS, coherence
from lakehouse.forecast.settings import ForecastSettings
from tests.conftest import ROOT
from tests.e2e.case import Built, build

pytestmark = pytest.mark.e2e
STORES, SKUS = 6, 12
FAST = {
    "LAKEHOUSE_FORECAST_SCALE": f"{STORES}x{SKUS}",
    "LAKEHOUSE_FORECAST_EVALUATION__TEST": "14d",
    "LAKEHOUSE_FORECAST_EVALUATION__VALIDATION": "14d",
    "LAKEHOUSE_FORECAST_MODELS__LIGHTGBM": json.dumps(
        {
            "objective": "tweedie",
            "n_estimators": 60,
            "learning_rate": 0.1,
            "num_leaves": 15,
            "min_child_samples": 20,
            "n_jobs": 1,
            "verbosity": -1,
        }
    ),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory, redis_server):
    from resources import RedisResource

    redis.Redis.from_url(redis_server.url).flushdb()
    with build(
        tmp_path_factory, "forecast", FAST, extra_resources={"redis": RedisResource(url=redis_server.url)}
    ) as case:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in {
                **FAST,
                "LAKEHOUSE_HOME": str(case.home),
                "DAGSTER_HOME": str(case.home / "dagster"),
            }.items():
                mp.setenv(name, value)
            yield case


def _metadata(built: Built, name: str) -> dict:
    event = built.instance.get_latest_materialization_event(dg.AssetKey(["forecast", name]))
    assert event is not None, f"forecast/{name} was not materialized"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _stores(built: Built) -> list[str]:
    from assets.forecast.partitions import every_store

    return every_store(built.instance)


def test_every_step_succeeds_and_the_store_partitions_came_from_the_data(built):
    assert all(built.outcome["success"].values()), built.outcome["success"]
    assert built.outcome["private_redis"] is False
    assert len(_stores(built)) == STORES


def test_nightly_forecasts_cover_every_store_for_both_origins(built):
    origins = built.lake.partitions("forecast", "store_forecasts", "origin")
    assert origins == [str(built.outcome["past_origin"]), str(built.outcome["origin"])]
    tonight = built.lake.read_partitions("forecast", "store_forecasts", "origin", [origins[-1]])
    assert tonight["store_id"].n_unique() == STORES
    assert tonight.group_by("unique_id").len()["len"].unique().to_list() == [14]
    assert tonight["ds"].min() == built.outcome["origin"] + timedelta(days=1)


def test_reconciled_forecasts_are_coherent_at_every_level(built):
    operational = built.lake.read("forecast", "operational_forecast")
    planning = built.lake.read("forecast", "planning_forecast")
    assert set(operational["level"]) == {"national", "region", "store", "sku"}
    for table in (operational, planning):
        for column in (*METHODS, "reconciled"):
            stats = coherence(table, column)
            assert stats["max_relative_gap"] < 1e-6 and stats["negative_values"] == 0
    assert planning.filter(pl.col("level") == "national").height == ForecastSettings().planning_periods
    keys = [
        dg.AssetCheckKey(dg.AssetKey(["forecast", n]), "coherent_and_non_negative")
        for n in ("operational_forecast", "planning_forecast")
    ]
    records = built.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    assert {k: r.status.value for k, r in records.items()} == {k: "SUCCEEDED" for k in keys}


def test_published_forecast_matches_the_operational_bottom_level(built):
    client = redis.Redis.from_url(built.resources["redis"].url)
    published = current(client)
    assert published["origin"] == str(built.outcome["origin"])
    operational = built.lake.read("forecast", "operational_forecast").filter(pl.col("level") == "sku").sort("ds")
    assert published["series"] == operational["node"].n_unique()
    node = operational["node"][0]
    store, sku = node.split("/")[-2:]
    raw = client.hget(f"forecast:run:{published['run_id']}", f"{store}|{sku}")
    assert json.loads(raw)["forecast"] == pytest.approx(
        operational.filter(pl.col("node") == node)["reconciled"].round(3).to_list()
    )
    client.close()


def test_the_champion_came_through_the_gate_and_serves_the_night(built):
    settings = ForecastSettings()
    registry = built.registry()
    champion = registry.alias_version(settings.model_name, CHAMPION)
    assert champion == _metadata(built, "model")["model_version"]
    assert promotion.recorded_verdict(registry, settings.model_name, champion)[0] == "passed"
    assert _metadata(built, "store_forecasts")["model_version"] == champion
    assert _metadata(built, "store_forecasts")["shadow"] is False
    run = registry.client.get_run(_metadata(built, "model")["mlflow_run_id"])
    assert "routing" in run.data.params
    stat = [a.path for a in registry.client.list_artifacts(run.info.run_id, "forecast_models/stat")]
    assert {p.rsplit("/", 1)[-1] for p in stat} <= {f"{s}.pkl" for s in _stores(built)}


def test_the_backtest_is_like_for_like_at_every_step_and_level(built):
    report = built.lake.read("forecast", "backtest")
    meta = _metadata(built, "backtest")
    assert meta["series"] == f"all {STORES * SKUS} series" or meta["series"].startswith("all ")
    assert set(report["step"]) == set(range(0, 15))
    same_rows = report.group_by("segment", "step").agg(pl.col("rows").n_unique().alias("n"))
    assert same_rows["n"].max() == 1, "every model of a segment is scored on the same rows"
    assert {"SeasonalNaive", "LightGBM", "routed"} <= set(report.filter(pl.col("segment") == "all")["model"])
    assert set(built.lake.read("forecast", "backtest_levels")["level"]) == {"national", "region", "store", "sku"}
    at = report.filter((pl.col("step") == 7) & (pl.col("segment") == "all"))
    wape = dict(at.select("model", "wape").iter_rows())
    assert 0 < wape["routed"] < wape["SeasonalNaive"] and meta["wape_d7"].endswith("%")
    assert (
        "data:image/svg+xml" in meta["mape_d7_per_segment"] and len(meta["mape_d7_per_segment"]) < 1000
    )  # shown inline


def test_financial_impact_says_its_economics_are_the_seeds_defaults(built):
    meta = _metadata(built, "financial_impact")
    assert "seed's defaults" in meta["economics"] and meta["annual_savings"].endswith("EUR")
    money = dict(built.lake.read("forecast", "financial_impact").select("item", "ours").iter_rows())
    assert meta["roi_year1"] == pytest.approx(money["annual savings"] / 380_000, abs=0.01)


def test_live_accuracy_measures_the_matured_origin_without_a_false_alert(built):
    accuracy = built.lake.read("forecast", "live_accuracy")
    assert accuracy["origin"].unique().to_list() == [built.outcome["past_origin"]]
    record = built.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(["forecast", "live_accuracy"]), "mape_drift")]
    )
    assert next(iter(record.values())).status.value == "SUCCEEDED"


def test_the_nightly_schedule_runs_every_store_in_one_run_on_the_configured_source(built, tmp_path, monkeypatch):
    from demos.forecast import definitions

    mine = built.copy(tmp_path)
    monkeypatch.setenv("LAKEHOUSE_HOME", str(mine.home))
    from sensors.forecast import schedules

    defs = definitions(mine.resources)
    schedule = defs.resolve_schedule_def("forecast_nightly_schedule")
    defaults = {s.name: s for s in schedules(ForecastSettings())}["forecast_nightly_schedule"]
    assert defaults.execution_timezone == "Europe/Paris" and defaults.cron_schedule == "0 4 * * *"
    moved = {
        s.name: s
        for s in schedules(
            ForecastSettings(
                calendar={"start": "2020-01-01", "timezone": "America/Chicago"}, schedules={"nightly": "30 2 * * *"}
            )
        )
    }
    assert (
        moved["forecast_nightly_schedule"].execution_timezone == "America/Chicago"
        and moved["forecast_nightly_schedule"].cron_schedule == "30 2 * * *"
    )
    with dg.build_schedule_context(
        instance=mine.instance, scheduled_execution_time=datetime(2026, 10, 13, 4)
    ) as context:
        request = schedule.evaluate_tick(context).run_requests[0]
    stores = _stores(mine)
    assert (
        request.tags["dagster/asset_partition_range_start"] == stores[0]
        and request.tags["dagster/asset_partition_range_end"] == stores[-1]
    )
    result = defs.resolve_job_def("forecast_nightly").execute_in_process(
        instance=mine.instance, tags=request.tags, resources=mine.resources
    )
    assert result.success
    from sensors.forecast import forecast_publish_when_stores_done

    context = dg.build_sensor_context(instance=mine.instance)
    assert isinstance(forecast_publish_when_stores_done(context), dg.RunRequest)
    again = forecast_publish_when_stores_done(dg.build_sensor_context(instance=mine.instance, cursor=context.cursor))
    assert isinstance(again, dg.SkipReason)  # nothing new since: no second publication


def test_a_multi_store_backfill_runs_from_the_cli(built, tmp_path):
    mine = built.copy(tmp_path)
    stores = _stores(mine)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LAKEHOUSE_HOME": str(mine.home),
        "DAGSTER_HOME": str(mine.home / "dagster"),
    }
    command = [
        str(os.path.join(os.path.dirname(sys.executable), "dagster")),
        "asset",
        "materialize",
        "-f",
        str(ROOT / "definitions.py"),
        "--select",
        "forecast/sales",
        "--partition-range",
        f"{stores[0]}...{stores[-1]}",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    runs = mine.instance.get_runs(limit=1)
    assert runs[0].tags["dagster/asset_partition_range_end"] == stores[-1]
