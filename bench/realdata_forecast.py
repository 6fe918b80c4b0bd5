"""The forecasting case on the kit's M5 demand data: the documented path, then the figures from the case's
own backtest beside plain baselines.

The user's steps, with LAKEHOUSE_SOURCES naming the mapping file (`bench.realdata` prepares the
home): the master tables from the `dagster` CLI (they register one partition per store), a
backfill of every store's sales in one run (`--partition-range`, the single-run backfill policy),
a tick of the weekly refit schedule (sales, refit with model selection, MLflow challenger,
backtest and gate, promotion, planning forecast, financial report), a tick of the nightly
schedule (forecasts from the champion, or in shadow from the refused challenger) and a tick of the
publication sensor (reconciliation, Redis unless in shadow, live accuracy; a private redis-server).
Default resources and settings, no run config. Every run is green whether the gate passes or not;
the verdict is in the result.

Kit (`realdata/forecast.yaml`, `run`): the kit's protocol is the case's backtest on the kit's test
days: each day forecast from the origin 7 days before, D+7 scored; WAPE item x store, MAPE on y > 0,
store and state levels as sums of forecasts and actuals, beside the kit's published baselines.

Lean (`realdata/forecast_lean.yaml`, `run_lean`): the same file summed into weeks by the mapping,
hierarchy only. The 26 weeks 2015-11-01 .. 2016-04-24 are forecast from one origin (2015-10-25, 26
weeks ahead: the backtest's long horizon) and rolled one week (W+1); a seasonal naive and a plain
mlforecast LightGBM are computed in the same run on the rows the lake holds, with the same cut-off.

The slice runs the same path on 2 stores x 4 items (the same mapping over a subset of the file,
written in the home): it proves the path, its figures mean nothing.
"""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import yaml

from bench.common import ROOT
from bench.realdata import KIT, baseline, materialize, tick

MAPPING = ROOT / "realdata" / "forecast.yaml"
LEAN_MAPPING = ROOT / "realdata" / "forecast_lean.yaml"
STEP = 7  # the kit's D+7
TICK = datetime(2016, 4, 25, 4, 0)  # the night after the kit's last day
MASTER = ",".join(f"forecast/{t}" for t in ("stores", "products", "promotions", "events", "covariates"))
LEAN_ORIGIN = date(2015, 10, 25)  # the lean protocol's one origin: 26 weeks before the kit's last day
LEAN_WEEKS = 26
KIT_LIGHTGBM = {  # the kit's baseline parameters (shared/realdata/README.md)
    "objective": "tweedie",
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "random_state": 0,
    "n_jobs": 1,
    "verbosity": -1,
}


def slice_mapping(home: Path, mapping: Path = MAPPING) -> Path:
    """The same mapping over 2 stores x 4 items of the kit, written under the home."""
    folder = home / "kit_slice"
    folder.mkdir(parents=True)
    kit = pl.read_parquet(KIT / "demand" / "m5_tiny.parquet")
    items = sorted(kit["item_id"].unique().to_list())[:4]
    kit.filter(
        pl.col("store_id").cast(pl.String).is_in(["CA_1", "TX_1"]) & pl.col("item_id").is_in(items)
    ).write_parquet(folder / "m5_tiny.parquet")
    spec = yaml.safe_load(mapping.read_text())
    spec["forecast"]["folder"] = folder.name
    path = home / "forecast.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def documented_path() -> dict:
    """The user's steps through Dagster (CLI loads, schedule and sensor ticks); their outcomes and times."""
    import dagster as dg

    from assets.forecast.partitions import every_store
    from lakehouse.common.local_servers import RedisServer

    steps = {}
    with RedisServer() as server:
        os.environ["LAKEHOUSE_REDIS_URL"] = server.url
        steps["master_tables_s"] = round(materialize(MASTER), 1)
        instance = dg.DagsterInstance.get()
        stores = every_store(instance)
        steps["sales_backfill_s"] = round(materialize("forecast/sales", partition_range=(stores[0], stores[-1])), 1)
        started = time.perf_counter()
        refit = tick("forecast_weekly_refit_schedule", TICK)
        steps["weekly_refit_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        nightly = tick("forecast_nightly_schedule", TICK)
        published = publish_tick(instance)
        steps["nightly_and_publish_s"] = round(time.perf_counter() - started, 1)
    vectors = instance.get_latest_materialization_event(dg.AssetKey(["forecast", "published_forecast"]))
    return {
        "instance": instance,
        "stores": stores,
        "steps_s": steps,
        "schedule_ticks": {"weekly_refit": refit, "nightly": nightly, "publication_sensor": published},
        "published_vectors": int(vectors.asset_materialization.metadata["dagster/row_count"].value) if vectors else 0,
    }


def lifecycle(instance) -> dict:
    """The gate's verdict on the refit's challenger, the champion after it, and whether tonight's forecasts are
    in shadow (no champion) or published."""
    import dagster as dg

    key = dg.AssetCheckKey(dg.AssetKey(["forecast", "backtest"]), "challenger_gate")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
    evaluation = record.event.dagster_event.event_specific_data if record and record.event else None
    champion = _metadata(instance, "champion_model")
    night = _metadata(instance, "store_forecasts")
    backtest = _metadata(instance, "backtest")
    return {
        "gate_passed": bool(evaluation.passed) if evaluation else None,
        "verdict": evaluation.description if evaluation else "no gate evaluation",
        "champion_version": champion.get("champion_version"),
        "champion_outcome": champion.get("outcome"),
        "nightly_version": night.get("model_version"),
        "nightly_in_shadow": night.get("shadow"),
        "reconciliation": {h: backtest.get(f"reconciliation_{h}") for h in ("operational", "planning")},
    }


def _metadata(instance, name: str) -> dict:
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey(["forecast", name]))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()} if event else {}


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
    from lakehouse.common.home import LakehouseHome
    from lakehouse.common.lake import Lake

    if slice_:
        os.environ["LAKEHOUSE_SOURCES"] = str(slice_mapping(home))
    path = documented_path()
    instance = path.pop("instance")
    lake = Lake(str(LakehouseHome(home).lake))
    backtest = _metadata(instance, "backtest")
    ours = figures(lake, "routed")
    reference = baseline("demand")["results"]
    target = reference["lightgbm_mlforecast"]
    return {
        "dataset": "M5 tiny: 28 items x 10 Walmart stores, daily" + (" (slice: 2 stores x 4 items)" if slice_ else ""),
        "protocol": (
            f"the case's backtest on {backtest['window']}: each day from the origin 7 days before (D+7), models "
            "fitted at the window's first origin"
        ),
        "stores": len(path["stores"]),
        "series": backtest["series"],
        "routing": dict(lake.read("forecast", "segments").group_by("segment").len().iter_rows())
        | {"chosen": _routing(instance)},
        **{k: v for k, v in path.items() if k not in ("stores", "steps_s")},
        "lifecycle": lifecycle(instance),
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
        "steps_s": path["steps_s"],
    }


# --------------------------------------------------------------------------- the lean variant


def scores(rows: pl.DataFrame, column: str, stores: pl.DataFrame) -> dict:
    """WAPE and MAPE (y > 0) of `column` against `actual` per store x item, and summed to stores and states."""

    def measure(frame: pl.DataFrame) -> dict:
        err = (pl.col(column) - pl.col("actual")).abs()
        row = frame.select(
            wape=err.sum() / pl.col("actual").abs().sum(),
            mape_on_y_gt_0=(err / pl.col("actual")).filter(pl.col("actual") > 0).mean(),
            n_points=pl.len(),
        ).row(0, named=True)
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}

    tagged = rows.join(stores.select("store_id", "state"), on="store_id")
    out = {"item_store": measure(rows)}
    for level in ("store_id", "state"):
        summed = tagged.group_by(level, "ds").agg(pl.col(column).sum(), pl.col("actual").sum())
        out["store" if level == "store_id" else "state"] = measure(summed)
    return out


def lean_baselines(sales: pl.DataFrame, origin: date, weeks: int) -> pl.DataFrame:
    """store_id, sku_id, ds, protocol (`one_origin` | `rolled_w1`) and the baselines' forecasts of the weeks
    after `origin`: the seasonal naive (the same week a year before) and mlforecast LightGBM (the kit's
    parameters, lags of 1 to 4 weeks, rolling means of 4 and 13, the month) fitted on the weeks up to
    `origin`, 26 weeks ahead from it (recursive) and one week ahead from each week (no refit)."""
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean

    frame = sales.select(
        pl.concat_str("store_id", pl.lit("/"), "sku_id").alias("unique_id"),
        pl.col("date").alias("ds"),
        pl.col("units").cast(pl.Float64).alias("y"),
    ).sort("unique_id", "ds")
    data = frame.to_pandas()
    data["ds"] = data["ds"].astype("datetime64[ns]")

    def model():
        return MLForecast(
            models={"lightgbm": LGBMRegressor(**KIT_LIGHTGBM)},
            freq="W-SUN",
            lags=[1, 2, 3, 4],
            lag_transforms={1: [RollingMean(window_size=4), RollingMean(window_size=13)]},
            date_features=["month"],
        )

    train = data[data["ds"] <= origin.isoformat()]
    one = model().fit(train).predict(weeks)
    recent = data[data["ds"] <= (origin + timedelta(weeks=weeks)).isoformat()]
    rolled = model().cross_validation(recent, n_windows=weeks, h=1, step_size=1, refit=False)
    lightgbm = pl.concat(
        [
            pl.from_pandas(one[["unique_id", "ds", "lightgbm"]]).with_columns(protocol=pl.lit("one_origin")),
            pl.from_pandas(rolled[["unique_id", "ds", "lightgbm"]]).with_columns(protocol=pl.lit("rolled_w1")),
        ]
    ).with_columns(pl.col("ds").cast(pl.Date))
    naive = frame.select("unique_id", (pl.col("ds") + pl.duration(weeks=52)).alias("ds"), seasonal_naive="y")
    return (
        lightgbm.join(naive, on=["unique_id", "ds"], how="left")
        .with_columns(pl.col("unique_id").str.split_exact("/", 1).struct.rename_fields(["store_id", "sku_id"]))
        .unnest("unique_id")
    )


def run_lean(home: Path, slice_: bool) -> dict:
    """The lean variant: weekly rows, the hierarchy only; ours and the baselines on the same rows."""
    from lakehouse.common.home import LakehouseHome
    from lakehouse.common.lake import Lake

    if slice_:
        os.environ["LAKEHOUSE_SOURCES"] = str(slice_mapping(home, LEAN_MAPPING))
    path = documented_path()
    instance = path.pop("instance")
    lake = Lake(str(LakehouseHome(home).lake))
    started = time.perf_counter()
    sales = lake.read_partitions("forecast", "sales", "store")
    reference = lean_baselines(sales, LEAN_ORIGIN, LEAN_WEEKS)
    baseline_s = round(time.perf_counter() - started, 1)
    ours = {
        "rolled_w1": lake.read("forecast", "backtest_forecasts").filter(pl.col("step") == 1),
        "one_origin": lake.read("forecast", "backtest_long_horizon").filter(pl.col("origin") == LEAN_ORIGIN),
    }
    stores = lake.read("forecast", "stores")
    result, meets = {}, {}
    for protocol, rows in ours.items():
        same = rows.select("store_id", "sku_id", "ds", "actual", ours=pl.col("routed")).join(
            reference.filter(pl.col("protocol") == protocol), on=["store_id", "sku_id", "ds"]
        )
        result[protocol] = {m: scores(same, m, stores) for m in ("ours", "seasonal_naive", "lightgbm")}
        meets[protocol] = {
            f"item_store_wape_vs_{m}": result[protocol]["ours"]["item_store"]["wape"]
            <= result[protocol][m]["item_store"]["wape"]
            for m in ("seasonal_naive", "lightgbm")
        }
    backtest = _metadata(instance, "backtest")
    return {
        "dataset": (
            "M5 tiny summed into weeks ending on Sunday by the mapping; hierarchy only (no price, SNAP or events)"
        )
        + (" (slice: 2 stores x 4 items)" if slice_ else ""),
        "protocol": (
            f"weeks {LEAN_ORIGIN + timedelta(weeks=1)} .. {LEAN_ORIGIN + timedelta(weeks=LEAN_WEEKS)}: one_origin = "
            f"26 weeks ahead from {LEAN_ORIGIN} (the backtest's long horizon); rolled_w1 = each week from the week "
            "before (W+1). Models and baselines fitted once, on the weeks up to the origin."
        ),
        "stores": len(path["stores"]),
        "series": backtest.get("series"),
        **{k: v for k, v in path.items() if k not in ("stores", "steps_s")},
        "lifecycle": lifecycle(instance),
        "routing": _routing(instance),
        "ours": {p: r["ours"] for p, r in result.items()},
        "baseline": {p: {m: r[m] for m in ("seasonal_naive", "lightgbm")} for p, r in result.items()},
        "meets_baseline": all(v for m in meets.values() for v in m.values()),
        "meets": meets,
        "steps_s": {**path["steps_s"], "baselines_s": baseline_s},
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
    request = requests[0]
    result = defs.resolve_job_def(sensor.job_name).execute_in_process(
        instance=instance, tags=request.tags, asset_selection=request.asset_selection, raise_on_error=False
    )
    return {
        "requested": True,
        "success": result.success,
        "published": request.asset_selection is None
        or dg.AssetKey(["forecast", "published_forecast"]) in request.asset_selection,
    }


def _routing(instance) -> str:
    routing = _metadata(instance, "model").get("routing")
    return ", ".join(f"{r.data['segment']}: {r.data['model']}" for r in routing.records) if routing else "none"
