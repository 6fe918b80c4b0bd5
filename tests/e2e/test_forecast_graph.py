"""The whole forecast graph, end to end, on a small chain (the demo's stores, few SKUs)."""

from datetime import datetime, timedelta

import json

import dagster as dg
import polars as pl
import pytest
import redis

from lakehouse.common.home import LakehouseHome
from lakehouse.forecast.config import SETTINGS, WorldConfig
from lakehouse.forecast.publish import current
from lakehouse.forecast.reconcile import coherence
from tests.e2e.case import Built, build

pytestmark = pytest.mark.e2e
SKUS = 12


@pytest.fixture(scope="module")
def built(tmp_path_factory, redis_server):
    from resources import RedisResource

    redis.Redis.from_url(redis_server.url).flushdb()
    env = {"LAKEHOUSE_FORECAST_SCALE": f"{WorldConfig().stores}x{SKUS}"}
    with build(tmp_path_factory, "forecast", env, extra_resources={"redis": RedisResource(url=redis_server.url)}) as case:
        yield case


def _metadata(built: Built, name: str) -> dict:
    event = built.instance.get_latest_materialization_event(dg.AssetKey(["forecast", name]))
    assert event is not None, f"forecast/{name} was not materialized"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _lake(built: Built, name: str) -> pl.DataFrame:
    return pl.read_parquet(LakehouseHome(built.home).lake / "forecast" / name / "data.parquet")


def test_every_step_succeeds(built):
    assert all(built.outcome["success"].values()), built.outcome["success"]
    assert built.outcome["private_redis"] is False


def test_nightly_forecasts_cover_every_store_for_both_origins(built):
    root = LakehouseHome(built.home).lake / "forecast" / "store_forecasts"
    origins = sorted(p.name for p in root.glob("origin=*"))
    assert origins == [f"origin={built.outcome['past_origin']}", f"origin={built.outcome['origin']}"]
    tonight = pl.read_parquet(root / origins[-1] / "store=*" / "data.parquet", hive_partitioning=False)
    assert tonight["store_id"].n_unique() == WorldConfig().stores
    assert tonight.group_by("store_id", "sku_id").len()["len"].unique().to_list() == [14]


def test_reconciled_forecasts_are_stored_and_coherent(built):
    for name in ("operational_forecast", "strategic_forecast"):
        table = _lake(built, name)
        assert set(table["level"]) == {"national", "region", "store", "sku"}
        stats = coherence(table)
        assert stats["max_relative_gap"] < 1e-6 and stats["negative_values"] == 0
    keys = [dg.AssetCheckKey(dg.AssetKey(["forecast", n]), "coherent_and_non_negative") for n in ("operational_forecast", "strategic_forecast")]
    records = built.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    assert {k: r.status.value for k, r in records.items()} == {k: "SUCCEEDED" for k in keys}


def test_published_forecast_matches_the_operational_bottom_level(built):
    client = redis.Redis.from_url(built.resources["redis"].url)
    published = current(client)
    assert published["origin"] == str(built.outcome["origin"])
    assert published["series"] == WorldConfig().stores * SKUS - _not_active(built)
    operational = _lake(built, "operational_forecast").filter(pl.col("level") == "sku").sort("ds")
    uid = operational["unique_id"][0]
    _, _, store, sku = uid.split("/")
    raw = client.hget(f"forecast:run:{published['run_id']}", f"{store}|{sku}")
    assert json.loads(raw)["forecast"] == pytest.approx(operational.filter(pl.col("unique_id") == uid)["yhat"].round(3).to_list())
    client.close()


def _not_active(built: Built) -> int:
    root = LakehouseHome(built.home).lake / "forecast" / "store_forecasts" / f"origin={built.outcome['origin']}"
    forecast = pl.read_parquet(root / "store=*" / "data.parquet", hive_partitioning=False)
    return WorldConfig().stores * SKUS - forecast.select("store_id", "sku_id").n_unique()


def test_models_are_named_and_registered_in_mlflow(built):
    meta = _metadata(built, "global_models")
    registry = built.resources["mlflow"].registry(built.resources["lakehouse"])
    for name in (SETTINGS.promo_model_name, SETTINGS.new_model_name):
        assert registry.client.get_registered_model(name).name == name
    run = registry.client.get_run(meta["mlflow_run_id"])
    assert run.data.params["stable_model"] == "AutoARIMA" and run.data.params["seasonal_model"] == "MSTL"
    artifacts = [a.path for a in registry.client.list_artifacts(run.info.run_id, "stat_models")]
    assert len(artifacts) == WorldConfig().stores


def test_backtest_reports_every_segment_against_targets_and_baseline(built):
    meta = _metadata(built, "backtest")
    segments = set(pl.read_parquet(LakehouseHome(built.home).lake / "forecast" / "segments" / "store=*" / "data.parquet", hive_partitioning=False)["segment"])
    assert {"stable", "seasonal", "new"} <= segments
    for segment in segments:
        assert 0 < meta[f"mape_d7_{segment}"] < 2
    assert 0 < meta["baseline_mape_d7"] < 2
    assert "data:image/png;base64," in meta["chart"]
    report = _lake(built, "backtest")
    assert set(report["segment"]) == segments | {"all"}


def test_financial_impact_follows_the_seed(built):
    meta = _metadata(built, "financial_impact")
    assert 0 <= meta["overstock_pct_model"] < 1 and 0 <= meta["stockout_pct_baseline"] < 1
    assert meta["roi_year1"] == pytest.approx(meta["annual_savings_eur"] / SETTINGS.investment_eur)


def test_live_accuracy_measures_the_matured_origin(built):
    accuracy = _lake(built, "live_accuracy")
    assert accuracy["origin"].unique().to_list() == [built.outcome["past_origin"]]


def test_a_revised_promotion_after_the_origin_does_not_change_its_forecast(built):
    """The seed's leakage incident: revise a promotion after T, re-forecast at T, same numbers."""
    from assets.forecast import ASSETS, CHECKS
    from assets.forecast.forecasts import NightlyConfig
    from assets.forecast.partitions import store_partitions

    lake = LakehouseHome(built.home).lake / "forecast"
    origin = built.outcome["past_origin"]
    store = store_partitions.get_partition_keys()[0]
    path = lake / "store_forecasts" / f"origin={origin}" / f"store={store}" / "data.parquet"
    before = pl.read_parquet(path)
    promos = pl.read_parquet(lake / "promotions" / "data.parquet")
    in_horizon = promos.filter((pl.col("start_date") > origin) & (pl.col("published_date") <= origin) & pl.col("sku_id").is_in(before["sku_id"].implode()))
    assert in_horizon.height, "the test world has a promotion announced inside the horizon"
    target = in_horizon.row(0, named=True)
    revision = {**target, "version": 99, "discount_pct": 0.5 if target["discount_pct"] < 0.5 else 0.1, "published_date": origin + timedelta(days=1)}
    pl.concat([promos, pl.DataFrame([revision], schema=promos.schema)]).write_parquet(lake / "promotions" / "data.parquet")
    try:
        result = dg.materialize([*ASSETS, *CHECKS], selection="key:forecast/store_forecasts", partition_key=store, instance=built.instance, resources=built.resources,
                                run_config=dg.RunConfig({"forecast__store_forecasts": NightlyConfig(origin=str(origin))}))
        assert result.success
        assert pl.read_parquet(path).equals(before)
    finally:
        promos.write_parquet(lake / "promotions" / "data.parquet")


def test_schedules_show_the_weekly_refit_and_the_nightly_forecast():
    import definitions
    from assets.forecast.partitions import store_partitions

    schedules = {s.name: s for s in definitions.defs().schedules}
    nightly = schedules["forecast_nightly_schedule"]
    assert nightly.cron_schedule == "0 4 * * *" and nightly.execution_timezone == "Europe/Paris"
    assert schedules["forecast_weekly_refit_schedule"].cron_schedule == "0 1 * * 0"
    assert schedules["forecast_global_refit_schedule"].job_name == "forecast_global_refit"
    with dg.build_schedule_context(scheduled_execution_time=datetime(2026, 10, 12, 4)) as context:
        requests = nightly(context)
    assert [r.partition_key for r in requests] == store_partitions.get_partition_keys()


def test_publication_starts_once_every_store_has_its_nightly_forecast(built):
    from sensors.forecast import forecast_publish_when_stores_done

    context = dg.build_sensor_context(instance=built.instance)
    request = forecast_publish_when_stores_done(context)
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("publish-")
    again = forecast_publish_when_stores_done(dg.build_sensor_context(instance=built.instance, cursor=context.cursor))
    assert isinstance(again, dg.SkipReason)  # nothing new since: no second publication
