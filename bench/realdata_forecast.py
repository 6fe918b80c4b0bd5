"""The forecasting case on the kit's M5 demand data (realdata/forecast.yaml): the documented path,
then the kit's D+7 figures from the case's own backtest beside the kit's baselines.

The user's steps, with LAKEHOUSE_SOURCES naming the mapping file (`bench.realdata` prepares the
home): the master tables from the `dagster` CLI (they register one partition per store), a
backfill of every store's sales in one run (`--partition-range`, the single-run backfill policy),
a tick of the weekly refit schedule (sales, refit with model selection, MLflow challenger,
backtest and gate, promotion, planning forecast, financial report), a tick of the nightly
schedule (forecasts from the champion) and a tick of the publication sensor (reconciliation,
Redis, live accuracy; a private redis-server). Default resources, no run config.

The kit's protocol is the case's backtest on the kit's test days (the mapping's
`evaluation.test`): each day forecast from the origin 7 days before, D+7 scored; WAPE item x
store, MAPE on y > 0, store and state levels as sums of forecasts and actuals.

The slice runs the same path on 2 stores x 4 items (the same mapping over a subset of the file,
written in the home): it proves the path, its figures mean nothing.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import yaml

from bench.common import ROOT
from bench.realdata import KIT, baseline, materialize, tick

MAPPING = ROOT / "realdata" / "forecast.yaml"
STEP = 7  # the kit's D+7
TICK = datetime(2016, 4, 25, 4, 0)  # the night after the kit's last day
MASTER = ",".join(f"forecast/{t}" for t in ("stores", "products", "promotions", "events", "covariates"))


def slice_mapping(home: Path) -> Path:
    """The same mapping over 2 stores x 4 items of the kit, written under the home."""
    folder = home / "kit_slice"
    folder.mkdir(parents=True)
    kit = pl.read_parquet(KIT / "demand" / "m5_tiny.parquet")
    items = sorted(kit["item_id"].unique().to_list())[:4]
    kit.filter(
        pl.col("store_id").cast(pl.String).is_in(["CA_1", "TX_1"]) & pl.col("item_id").is_in(items)
    ).write_parquet(folder / "m5_tiny.parquet")
    spec = yaml.safe_load(MAPPING.read_text())
    spec["forecast"]["folder"] = folder.name
    path = home / "forecast.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def figures(lake, model: str) -> dict:
    """The kit's figures of one model column of the stored backtest, at D+7."""
    report = (
        lake.read("forecast", "backtest")
        .filter((pl.col("model") == model) & (pl.col("step") == STEP) & (pl.col("segment") == "all"))
        .row(0, named=True)
    )
    levels = {
        r["level"]: r
        for r in lake.read("forecast", "backtest_levels").filter(pl.col("model") == model).iter_rows(named=True)
    }
    rows = {"item_store": {"wape": report["wape"], "mape_on_y_gt_0": report["mape"], "n_points": report["rows"]}}
    rows |= {
        level: {
            "wape": levels[level]["wape"],
            "mape_on_y_gt_0": levels[level]["mape"],
            "n_points": levels[level]["rows"],
        }
        for level in ("store", "state")
    }
    return {
        level: {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for level, row in rows.items()
    }


def run(home: Path, slice_: bool) -> dict:
    import dagster as dg

    from lakehouse.common.home import LakehouseHome
    from lakehouse.common.lake import Lake
    from lakehouse.common.local_servers import RedisServer

    if slice_:
        os.environ["LAKEHOUSE_SOURCES"] = str(slice_mapping(home))
    steps = {}
    with RedisServer() as server:
        os.environ["LAKEHOUSE_REDIS_URL"] = server.url
        steps["master_tables_s"] = round(materialize(MASTER), 1)
        instance = dg.DagsterInstance.get()
        from assets.forecast.partitions import every_store

        stores = every_store(instance)
        steps["sales_backfill_s"] = round(materialize("forecast/sales", partition_range=(stores[0], stores[-1])), 1)
        started = time.perf_counter()
        refit = tick("forecast_weekly_refit_schedule", TICK)
        steps["weekly_refit_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        nightly = tick("forecast_nightly_schedule", TICK)
        published = publish_tick(instance)
        steps["nightly_and_publish_s"] = round(time.perf_counter() - started, 1)
    lake = Lake(str(LakehouseHome(home).lake))
    backtest = {
        k: v.value
        for k, v in instance.get_latest_materialization_event(
            dg.AssetKey(["forecast", "backtest"])
        ).asset_materialization.metadata.items()
    }
    vectors = instance.get_latest_materialization_event(dg.AssetKey(["forecast", "published_forecast"]))
    ours = figures(lake, "routed")
    reference = baseline("demand")["results"]
    target = reference["lightgbm_mlforecast"]
    return {
        "dataset": "M5 tiny: 28 items x 10 Walmart stores, daily" + (" (slice: 2 stores x 4 items)" if slice_ else ""),
        "protocol": f"the case's backtest on {backtest['window']}: each day from the origin 7 days before (D+7), models fitted at the window's first origin",
        "stores": len(stores),
        "series": backtest["series"],
        "routing": dict(lake.read("forecast", "segments").group_by("segment").len().iter_rows())
        | {"chosen": _routing(instance)},
        "schedule_ticks": {"weekly_refit": refit, "nightly": nightly, "publication_sensor": published},
        "published_vectors": int(vectors.asset_materialization.metadata["dagster/row_count"].value) if vectors else 0,
        "ours": ours,
        "lightgbm_in_the_pipeline": figures(lake, "LightGBM"),
        "seasonal_naive_in_the_pipeline": figures(lake, "SeasonalNaive"),
        "kit_baselines": reference,
        "targets": {
            "item_store_wape": round(target["item_store"]["wape"], 4),
            "store_wape": round(target["store"]["wape"], 4),
        },
        "meets_targets": {
            "item_store_wape": ours["item_store"]["wape"] <= target["item_store"]["wape"],
            "store_wape": ours["store"]["wape"] <= target["store"]["wape"],
        },
        "steps_s": steps,
    }


def publish_tick(instance) -> dict:
    """One tick of the publication sensor, its run executed as the daemon would launch it."""
    import dagster as dg

    import definitions

    defs = definitions.defs()
    sensor = defs.resolve_sensor_def("forecast_publish_when_stores_done")
    requests = (
        sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
        ).run_requests
        or []
    )
    if not requests:
        return {"requested": False}
    result = defs.resolve_job_def(sensor.job_name).execute_in_process(
        instance=instance, tags=requests[0].tags, raise_on_error=False
    )
    return {"requested": True, "success": result.success}


def _routing(instance) -> str:
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey(["forecast", "model"]))
    routing = event.asset_materialization.metadata["routing"].value
    return ", ".join(f"{r.data['segment']}: {r.data['model']}" for r in routing.records)
