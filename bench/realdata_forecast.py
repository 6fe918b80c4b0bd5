"""The M5 demand kit (`../shared/realdata/demand`) through the forecasting case's documented path.

`run(home, slice)` points LAKEHOUSE_SOURCES at `realdata/forecast.yaml` (a mapping file, no
Python), starts from a fresh home and does what a user's Dagster would, with the case's part of
the code location (`demos.forecast.definitions`): the `forecast_master_refresh` job (registering the store partitions), the `forecast_weekly_refit` job
over every store in one run (a multi-partition backfill: one ingest of the file, refit, backtest,
gate, promotion, planning, financial report), a tick of the nightly schedule and the run it asks
for, and a tick of the publication sensor and its run (Redis: a private redis-server). Default
resources, no run config.

The kit's protocol is the case's backtest on the kit's test days (the yaml's `evaluation.test`):
each day forecast from the origin 7 days before, step D+7 scored; WAPE item x store, MAPE on
y > 0, store and state levels as sums of forecasts and actuals. The figures come from the stored
backtest tables, beside the kit's `baseline_results.json`.

`slice=True` runs the same path on 2 stores x 4 items (the same mapping over a subset of the file,
in the home) for CI: the path is exercised, the figures mean nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import yaml

from bench.common import ROOT

MAPPING = ROOT / "realdata" / "forecast.yaml"
STEP = 7  # the kit's D+7


def _kit_folder() -> Path:
    spec = yaml.safe_load(MAPPING.read_text())["forecast"]
    return (MAPPING.parent / spec["folder"]).resolve()


def _slice_mapping(home: Path) -> Path:
    """The same mapping over 2 stores x 4 items of the kit, written under the home."""
    folder = home / "kit_slice"
    folder.mkdir(parents=True)
    kit = pl.read_parquet(_kit_folder() / "m5_tiny.parquet")
    items = sorted(kit["item_id"].unique().to_list())[:4]
    kit.filter(pl.col("store_id").cast(pl.String).is_in(["CA_1", "TX_1"]) & pl.col("item_id").is_in(items)).write_parquet(folder / "m5_tiny.parquet")
    spec = yaml.safe_load(MAPPING.read_text())
    spec["forecast"]["folder"] = folder.name
    path = home / "forecast.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _environment(home: Path, mapping: Path, redis_url: str) -> dict[str, str]:
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster" / "dagster.yaml")
    return {"LAKEHOUSE_SOURCES": str(mapping), "LAKEHOUSE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "LAKEHOUSE_REDIS_URL": redis_url}


def _figures(lake, model: str) -> dict:
    report = lake.read("forecast", "backtest").filter((pl.col("model") == model) & (pl.col("step") == STEP) & (pl.col("segment") == "all")).row(0, named=True)
    levels = {r["level"]: r for r in lake.read("forecast", "backtest_levels").filter(pl.col("model") == model).iter_rows(named=True)}
    return {
        "item_store": {"wape": report["wape"], "mape_on_y_gt_0": report["mape"], "n_points": report["rows"]},
        "store": {"wape": levels["store"]["wape"], "mape_on_y_gt_0": levels["store"]["mape"], "n_points": levels["store"]["rows"]},
        "state": {"wape": levels["state"]["wape"], "mape_on_y_gt_0": levels["state"]["mape"], "n_points": levels["state"]["rows"]},
    }


def run(home: Path, slice: bool) -> dict:
    import dagster as dg

    from lakehouse.common.home import LakehouseHome
    from lakehouse.common.lake import Lake
    from lakehouse.common.local_servers import RedisServer

    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    mapping = _slice_mapping(home) if slice else MAPPING
    timings: dict[str, float] = {}
    started = time.perf_counter()
    saved = dict(os.environ)
    with RedisServer() as server:
        os.environ.update(_environment(home, mapping, server.url))
        try:
            from demos.forecast import definitions
            from resources import default_resources
            from sensors.forecast import forecast_nightly_schedule, forecast_publish_when_stores_done

            defs = definitions()
            instance = dg.DagsterInstance.get()
            resources = default_resources()

            def job(name: str, tags: dict | None = None) -> None:
                t = time.perf_counter()
                result = defs.resolve_job_def(name).execute_in_process(instance=instance, tags=tags or {}, resources=resources)
                timings[name] = round(time.perf_counter() - t, 1)
                if not result.success:
                    raise RuntimeError(f"{name} failed: see the run in {home / 'dagster'}")

            from assets.forecast.partitions import every_store, store_range_tags

            job("forecast_master_refresh")
            stores = every_store(instance)
            job("forecast_weekly_refit", store_range_tags(stores))  # every store partition in one run
            with dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now()) as context:
                request = forecast_nightly_schedule.evaluate_tick(context).run_requests[0]
            job("forecast_nightly", dict(request.tags))
            if isinstance(forecast_publish_when_stores_done(dg.build_sensor_context(instance=instance)), dg.RunRequest):
                job("forecast_nightly_publish")
            lake = Lake(str(LakehouseHome(home).lake))
            ours = _figures(lake, "routed")
            global_model = _figures(lake, "LightGBM")
            naive = _figures(lake, "SeasonalNaive")
            model = {k: v.value for k, v in instance.get_latest_materialization_event(dg.AssetKey(["forecast", "model"])).asset_materialization.metadata.items()}
            backtest = {k: v.value for k, v in instance.get_latest_materialization_event(dg.AssetKey(["forecast", "backtest"])).asset_materialization.metadata.items()}
            published = instance.get_latest_materialization_event(dg.AssetKey(["forecast", "published_forecast"]))
        finally:
            os.environ.clear()
            os.environ.update(saved)
    baseline = json.loads((_kit_folder() / "baseline_results.json").read_text())["results"]
    target = baseline["lightgbm_mlforecast"]
    return {
        "dataset": "M5 tiny (28 items x 10 stores, daily)" + (" - slice: 2 stores x 4 items" if slice else ""),
        "protocol": "backtest on 2016-03-28 .. 2016-04-24, each day from the origin 7 days before (D+7); models fitted once at the window's first origin",
        "stores": len(stores),
        "series": backtest["series"],
        "routing": model["routing"],
        "ours": ours,
        "lightgbm_in_the_pipeline": global_model,
        "seasonal_naive_in_the_pipeline": naive,
        "kit_baselines": baseline,
        "targets": {"item_store_wape": target["item_store"]["wape"], "store_wape": target["store"]["wape"]},
        "meets_targets": {
            "item_store_wape": ours["item_store"]["wape"] <= target["item_store"]["wape"],
            "store_wape": ours["store"]["wape"] <= target["store"]["wape"],
        },
        "published_vectors": int(published.asset_materialization.metadata["dagster/row_count"].value) if published else 0,
        "wall_s": round(time.perf_counter() - started, 1),
        "run_wall_s": timings,
    }


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(Path(tmp) / "home", slice="--slice" in sys.argv), indent=1, default=str))
