"""Nightly forecast path for one store, and the weekly refit, against raw library calls.

    .venv/bin/python -m bench.forecast_nightly [--skus 8000] [--runs 3]

One store with `--skus` SKUs (the seed's 8,000 by default) over 3 years is generated (not
timed). Then, in this process:
  * weekly refit (once): segmentation, AutoARIMA/MSTL fits on the bounded window, the
    training frames and both global LightGBM models. Raw peer: the same StatsForecast.fit and
    MLForecast.fit calls on the frames already prepared;
  * nightly path (median of --runs): point-in-time features + forecast from fitted state
    (`forecast_store`), aggregate base forecasts + hierarchicalforecast reconciliation, and
    the atomic publication to a private redis-server. Raw peer: `model.forward` over every
    statistical series and `MLForecast.predict(new_df=...)` on the prepared frames.
Series per second per core uses every core of the machine (conservative: the path is mostly
single-threaded, LightGBM uses 2 threads). The extrapolation to 150 x 8,000 series on 16
cores assumes stores are independent partitions (multiprocess or k8s executor).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import warnings

import polars as pl

from bench.common import GIB, header, markdown_table, publish

NAME = "forecast_nightly"
GOAL_SERIES = 150 * 8_000
GOAL_SECONDS = 3_600
GOAL_CORES = 16


def _timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def measure(skus: int, runs: int, raw_refit_peer: bool) -> dict:
    import redis as redis_lib
    from mlforecast import MLForecast  # noqa: F401 - imported before timing

    from lakehouse.common.local_servers import RedisServer
    from lakehouse.forecast import world as gen
    from lakehouse.forecast.config import RULES, SETTINGS, WorldConfig
    from lakehouse.forecast.features import StoreData, history, period_start
    from lakehouse.forecast.models import STATIC_COLUMNS, fit_global_models, fit_stat_models, forecast_store, stat_model, stat_windows, training_frame
    from lakehouse.forecast.publish import publish as publish_redis
    from lakehouse.forecast.publish import vectors
    from lakehouse.forecast.reconcile import aggregate_base_forecasts, aggregate_history, reconcile
    from lakehouse.forecast.segmentation import segment_store

    warnings.simplefilter("ignore")
    world = WorldConfig(stores=1, skus=skus)
    freq = world.frequency
    tables = gen.master_tables(world)
    store = tables["stores"].row(0, named=True)
    data = StoreData(store, tables["products"], gen.store_sales(world, tables, store["store_id"]), tables["promotions"], tables["weather_forecasts"], tables["events"])
    origin = world.last_day
    print(f"world: 1 store x {skus} SKUs, {data.sales.height:,} sales rows", flush=True)

    # Weekly refit.
    segments, seg_s = _timed(lambda: segment_store(data, origin, RULES))
    windows = stat_windows(history(data, freq), segments, freq)
    fitted, stat_s = _timed(lambda: fit_stat_models(windows, freq, SETTINGS))
    frame, frame_s = _timed(lambda: training_frame(data, origin, freq, SETTINGS, segments))
    global_models, global_s = _timed(lambda: fit_global_models([frame], origin, freq, SETTINGS))
    print(f"refit: segments {seg_s:.1f}s, stat {stat_s:.1f}s ({len(fitted)} series), frames {frame_s:.1f}s, global {global_s:.1f}s", flush=True)

    from statsforecast import StatsForecast

    def raw_refit():
        for segment, part in windows.groupby("segment"):
            StatsForecast(models=[stat_model(segment, freq.season, SETTINGS)], freq=freq.alias, n_jobs=1).fit(part[["unique_id", "ds", "y"]])
        cols = ["unique_id", "ds", "y", *STATIC_COLUMNS, *global_models.dynamic_columns]
        pdf = frame.select(cols).to_pandas()
        from lakehouse.forecast.models import _mlforecast

        _mlforecast(freq, SETTINGS, freq.lags).fit(pdf.assign(ds=pdf["ds"].astype("datetime64[ns]")), static_features=list(STATIC_COLUMNS))
        _mlforecast(freq, SETTINGS, freq.lags[:2]).fit(pdf.assign(ds=pdf["ds"].astype("datetime64[ns]")), static_features=list(STATIC_COLUMNS))

    raw_refit_s = _timed(raw_refit)[1] if raw_refit_peer else None
    refit_s = seg_s + stat_s + frame_s + global_s
    print(f"raw refit {raw_refit_s}s vs pipeline {refit_s:.1f}s", flush=True)

    # Nightly path.
    server = RedisServer().start()
    client = redis_lib.Redis.from_url(server.url)
    totals = data.sales.with_columns(ds=period_start(pl.col("date"), freq)).group_by("store_id", "ds").agg(pl.col("units").sum().cast(pl.Float64).alias("y"))

    def nightly(run: int) -> dict:
        t0 = time.perf_counter()
        base = forecast_store(data, segments, fitted, global_models, origin, freq, SETTINGS)
        t1 = time.perf_counter()
        aggregate = aggregate_base_forecasts(aggregate_history(totals, tables["stores"]), freq, sorted(base["ds"].unique().to_list()))
        rec = reconcile(base, aggregate, tables["stores"])
        t2 = time.perf_counter()
        sku = rec["operational"].filter(pl.col("level") == "sku")
        ids = sku["unique_id"].str.split("/")
        publish_redis(client, vectors(sku.with_columns(store_id=ids.list.get(2), sku_id=ids.list.get(3))), f"bench{run}")
        t3 = time.perf_counter()
        return {"series": base["sku_id"].n_unique(), "forecast_s": t1 - t0, "reconcile_s": t2 - t1, "publish_s": t3 - t2, "total_s": t3 - t0}

    nights = [nightly(r) for r in range(runs)]
    client.close()
    server.stop()

    recent = history(data, freq).group_by("unique_id", maintain_order=True).tail(freq.stat_window)

    def raw_nightly():
        groups = {uid: part["y"].to_numpy() for (uid,), part in recent.group_by(["unique_id"], maintain_order=True)}
        for uid, model in fitted.items():
            model.forward(y=groups[uid].astype(float), h=freq.horizon)

    raw_stat = [_timed(raw_nightly)[1] for _ in range(runs)]
    # The same nightly path's statistical part, for the overhead ratio: forward calls only.
    series = nights[0]["series"]
    total = statistics.median(n["total_s"] for n in nights)
    cores = os.cpu_count() or 1
    per_core = series / total / cores
    extrapolated = GOAL_SERIES / (per_core * GOAL_CORES)
    return {
        "skus": skus,
        "series": series,
        "segments": dict(segments.group_by("segment").len().iter_rows()),
        "cores": cores,
        "nightly": {
            "wall_s": total,
            "forecast_s": statistics.median(n["forecast_s"] for n in nights),
            "reconcile_s": statistics.median(n["reconcile_s"] for n in nights),
            "publish_s": statistics.median(n["publish_s"] for n in nights),
            "series_per_s": series / total,
            "series_per_s_per_core": per_core,
            "raw_stat_forward_s": statistics.median(raw_stat),
            "stat_series": len(fitted),
        },
        "refit": {"wall_s": refit_s, "segments_s": seg_s, "stat_fit_s": stat_s, "frames_s": frame_s, "global_fit_s": global_s, "raw_s": raw_refit_s, "overhead_ratio": refit_s / raw_refit_s if raw_refit_s else None, "series_per_s_per_core": series / refit_s / cores},
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
        "extrapolation": {
            "series": GOAL_SERIES,
            "cores": GOAL_CORES,
            "nightly_hours": extrapolated / 3600,
            "goal_hours": GOAL_SECONDS / 3600,
            "needed_series_per_s_per_core": GOAL_SERIES / GOAL_SECONDS / GOAL_CORES,
            "meets_goal": extrapolated <= GOAL_SECONDS,
            "weekly_refit_hours_on_16_cores": GOAL_SERIES / (series / refit_s / cores * GOAL_CORES) / 3600,
        },
    }


def render(payload: dict) -> str:
    r = payload["result"]
    n, f, e = r["nightly"], r["refit"], r["extrapolation"]
    rows = [
        ["nightly path (features + fitted-state forecast + reconciliation + publish)", f"{n['wall_s']:.1f} s", f"{n['series_per_s_per_core']:.1f}", f"forecast {n['forecast_s']:.1f} s, reconcile {n['reconcile_s']:.1f} s, publish {n['publish_s']:.2f} s"],
        ["raw model.forward over the statistical series", f"{n['raw_stat_forward_s']:.1f} s", "-", f"{n['stat_series']} series"],
        ["weekly refit", f"{f['wall_s']:.1f} s", f"{f['series_per_s_per_core']:.2f}", (f"raw StatsForecast/MLForecast fits {f['raw_s']:.1f} s, overhead x{f['overhead_ratio']:.2f}" if f["raw_s"] else "raw peer not run (--no-raw-refit)")],
    ]
    return (
        f"1 store x {r['skus']:,} SKUs ({r['series']:,} series) on {r['cores']} cores, peak RSS {r['peak_rss_gib']:.2f} GiB\n\n"
        + markdown_table(["path", "wall", "series/s/core", "detail"], rows)
        + f"\n\n150 x 8,000 series on 16 cores: nightly {e['nightly_hours']:.2f} h (goal {e['goal_hours']:.0f} h, needs {e['needed_series_per_s_per_core']:.1f} series/s/core): "
        + ("meets" if e["meets_goal"] else "misses")
        + f" the goal; weekly refit {e['weekly_refit_hours_on_16_cores']:.1f} h"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skus", type=int, default=8_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--no-raw-refit", action="store_true", help="skip the raw refit peer (it doubles the refit time)")
    args = p.parse_args(argv)
    payload = {**header(NAME, args.runs), "result": measure(args.skus, args.runs, not args.no_raw_refit)}
    return publish(NAME, payload, render)


if __name__ == "__main__":
    sys.exit(main())
