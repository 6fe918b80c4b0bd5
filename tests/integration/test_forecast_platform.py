"""Forecast case on the platform: store-partition backfill on the multiprocess executor,
atomic Redis publication and the lookup endpoint, the Dask engine, users' bad files, checks."""

import subprocess
import sys
import threading
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import redis
from fastapi.testclient import TestClient

from lakehouse.common.home import LakehouseHome
from lakehouse.common.schema import InputDataError
from lakehouse.forecast import world as gen
from lakehouse.forecast.config import FREQUENCIES, RULES, SETTINGS, WorldConfig
from lakehouse.forecast.features import StoreData, history
from lakehouse.forecast.models import fit_stat_models, forward_stat_models, stat_windows
from lakehouse.forecast.publish import POINTER, RUN_PREFIX, current, publish
from lakehouse.forecast.schemas import load_master_tables
from lakehouse.forecast.segmentation import segment_store
from lakehouse.serving.app import API_KEY_HEADER, ServingSettings, create_app
from tests.conftest import ROOT

pytestmark = pytest.mark.integration
TINY = f"{WorldConfig.from_env().stores}x12"  # the configured store partitions, few SKUs


def _materialize(home: Path, selection, **kwargs):
    from assets.forecast import ASSETS, CHECKS
    from resources import LakehouseResource, default_resources

    resources = {**default_resources(), "lakehouse": LakehouseResource(home=str(home))}
    return dg.materialize([*ASSETS, *CHECKS], selection=selection, resources=resources, raise_on_error=False, **kwargs)


def _raw_config(**values):
    return dg.RunConfig({"forecast_master_tables": values})


def test_store_backfill_on_the_multiprocess_executor_has_no_lock_error(lakehouse_home, monkeypatch):
    """Every store partition at once, one run process each (as the run launcher starts them),
    each run on the multiprocess executor, all against the same home and Dagster instance."""
    from assets.forecast.partitions import store_partitions

    monkeypatch.setenv("LAKEHOUSE_FORECAST_SCALE", TINY)
    instance = dg.DagsterInstance.get()
    keys = store_partitions.get_partition_keys()
    assert _materialize(lakehouse_home, "key:forecast/stores or key:forecast/products or key:forecast/promotions or key:forecast/weather_forecasts or key:forecast/events", instance=instance).success
    assert _materialize(lakehouse_home, "key:forecast/sales", instance=instance, tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}).success
    runs = [subprocess.Popen([sys.executable, "-m", "tests.integration.forecast_helpers", key], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for key in keys]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), [o[-1500:] for o, r in zip(outputs, runs) if r.returncode]
    assert all(o.strip().splitlines()[-2:] == ["NO-LOCK", "SUCCESS"] for o in outputs)
    assert not any("database is locked" in o or "Could not set lock" in o for o in outputs)
    lake = LakehouseHome(lakehouse_home).lake / "forecast"
    assert sorted(p.parent.name for p in (lake / "segments").glob("store=*/data.parquet")) == [f"store={k}" for k in sorted(keys)]
    runs_done = instance.get_runs(filters=dg.RunsFilter(job_name="forecast_store_backfill"))
    assert sorted(r.tags["dagster/partition"] for r in runs_done) == sorted(keys)


def test_bad_promotion_file_fails_with_one_clear_error_and_leaves_the_lake_unchanged(lakehouse_home, tmp_path):
    world = WorldConfig(stores=2, skus=10)
    tables = gen.master_tables(world)
    source = tmp_path / "files"
    source.mkdir()
    for name in ("stores", "products"):
        tables[name].write_parquet(source / f"{name}.parquet")
    good = _materialize(lakehouse_home, "key:forecast/stores or key:forecast/products or key:forecast/promotions or key:forecast/weather_forecasts or key:forecast/events", run_config=_raw_config(config={"source_dir": str(source)}))
    assert good.success
    loaded = load_master_tables(source, date.today())
    assert loaded["promotions"].is_empty() and loaded["weather_forecasts"].is_empty()  # optional tables absent: left out

    bad = tables["promotions"].with_columns(end_date=pl.when(pl.int_range(pl.len()) == 3).then(pl.col("start_date") - timedelta(days=2)).otherwise(pl.col("end_date")))
    bad.write_csv(source / "promotions.csv")
    with pytest.raises(InputDataError, match=r"promotions.csv: table 'promotions', column 'end_date': 1 promotion\(s\) end before they start; e.g. rows: row 3"):
        load_master_tables(source, date.today())
    stores_file = LakehouseHome(lakehouse_home).lake / "forecast" / "stores" / "data.parquet"
    before = stores_file.stat().st_mtime_ns
    failed = _materialize(lakehouse_home, "key:forecast/stores or key:forecast/products or key:forecast/promotions or key:forecast/weather_forecasts or key:forecast/events", run_config=_raw_config(config={"source_dir": str(source)}))
    assert not failed.success
    assert stores_file.stat().st_mtime_ns == before
    assert not (LakehouseHome(lakehouse_home).lake / "forecast" / "promotions" / "data.parquet").exists() or pl.read_parquet(LakehouseHome(lakehouse_home).lake / "forecast" / "promotions" / "data.parquet").is_empty()


def _vectors(run: str, n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "store_id": [f"north-s{i % 7:03d}" for i in range(n)],
            "sku_id": [f"sku{i:05d}" for i in range(n)],
            "origin": [date(2026, 10, 11)] * n,
            "first_day": [date(2026, 10, 12)] * n,
            "forecast": [[float(len(run))] * 14] * n,
        }
    )


def test_publication_is_atomic_for_readers(redis_url):
    client = redis.Redis.from_url(redis_url)
    n = 30_000
    first = publish(client, _vectors("a", n), "a")
    assert first["written"] == n and current(client)["run_id"] == "a"
    seen, problems = set(), []
    done = threading.Event()

    def read():
        reader = redis.Redis.from_url(redis_url)
        script = reader.register_script("local r = redis.call('GET', KEYS[1]) if not r then return nil end return {r, redis.call('HGET', ARGV[2] .. r, ARGV[1])}")
        i = 0
        while not done.is_set():
            i = (i + 7919) % n
            got = script(keys=[POINTER], args=[f"north-s{i % 7:03d}|sku{i:05d}", RUN_PREFIX])
            if got is None or got[1] is None:
                problems.append(i)
            else:
                seen.add(got[0].decode())
        reader.close()

    thread = threading.Thread(target=read)
    thread.start()
    second = publish(client, _vectors("bb", n), "bb")
    done.set()
    thread.join()
    assert not problems, f"{len(problems)} lookups found no forecast during the switch"
    assert second["previous_run"] == "a" and current(client)["run_id"] == "bb"
    assert not client.exists(RUN_PREFIX + "a"), "the previous night is deleted after the switch"
    assert "a" in seen
    client.close()


def test_lookup_endpoint_serves_the_published_vector(redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url)
    settings = ServingSettings(api_key="k", home=LakehouseHome(tmp_path), redis_url=redis_url, cases=("forecast",))
    with TestClient(create_app(settings)) as http:
        assert http.get("/ready").json()["cases"]["forecast"]["ready"] is False  # nothing published yet
        publish(client, _vectors("night1", 20), "night1")
        ok = http.get("/forecast/stores/north-s003/skus/sku00003", headers={API_KEY_HEADER: "k"})
        assert ok.status_code == 200
        body = ok.json()
        assert body["origin"] == "2026-10-11" and len(body["forecast"]) == 14 and body["run_id"] == "night1"
        assert http.get("/forecast/stores/north-s003/skus/nope", headers={API_KEY_HEADER: "k"}).status_code == 404
        assert http.get("/forecast/stores/north-s003/skus/sku00003").status_code == 401
        ready = http.get("/ready").json()["cases"]["forecast"]
        assert ready == {"ready": True, "run_id": "night1", "origin": "2026-10-11", "series": 20}
    client.close()


def test_dask_engine_fits_the_same_models_as_local():
    from dask.distributed import LocalCluster

    world = WorldConfig(stores=3, skus=16, seed=5)
    tables = gen.master_tables(world)
    store = tables["stores"].filter(pl.col("store_type") == "residential").row(0, named=True)
    data = StoreData(store, tables["products"], gen.store_sales(world, tables, store["store_id"]), tables["promotions"], tables["weather_forecasts"], tables["events"])
    freq = FREQUENCIES["D"]
    segments = segment_store(data, world.last_day, RULES)
    hist = history(data, freq)
    windows = stat_windows(hist, segments, freq)
    assert windows["segment"].nunique() == 2
    local = forward_stat_models(fit_stat_models(windows, freq, SETTINGS), hist, freq)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        distributed = forward_stat_models(fit_stat_models(windows, freq, SETTINGS.with_(engine="dask", dask_scheduler=cluster.scheduler_address)), hist, freq)
    assert set(local) == set(distributed) and len(local) == windows["unique_id"].nunique()
    for uid in local:
        assert distributed[uid] == pytest.approx(local[uid], rel=1e-6)
