"""The forecasting case's weekly refit and nightly path, through the local engine or a Dask cluster.

    .venv/bin/python -m bench.forecast_nightly [--stores 1] [--skus 8000] [--runs 3]
        [--engine dask|local] [--scheduler tcp://host:8786 | --workers N] [--tag NAME]

`--stores` x `--skus` series over 3 years are generated (not timed). The routing is the seed's (AutoARIMA
for stable series, MSTL for seasonal ones, LightGBM for promotions, family mean + LightGBM for new
products), so every model family is fitted and forecast. With `--engine dask` (the default) the work goes
to the cluster at `--scheduler`, or to a LocalCluster of `--workers` single-threaded worker processes on
this machine (default: one per core), through the settings a deployment uses (`models.engine: dask`,
`models.dask_scheduler`). Then:
  * two weekly refits (`fit_models`, segmentation timed apart): the first one of a deployment, 7 days
    before the last day, where AutoARIMA searches every series' orders; and the next week's, from the
    first one's state, where only the share due this week is searched (`models.arima_search_every`) and
    the others keep their orders and re-estimate their parameters: the steady state of the weekly refit;
  * the nightly path (median of --runs): the forecast from fitted state (one task per store on the
    cluster), hierarchicalforecast reconciliation, the publication to a private redis-server.

Series/s/core: series / (wall x cores), cores = the cluster's worker threads (local engine: the machine's
cores), so other work on a shared machine makes it pessimistic; and series per CPU-second, from the CPU
time of this process (the driver) and of the workers. Per statistical family: series per CPU-second of the
fits themselves (each model's `fit_cpu_s`); LightGBM: its phase (training frame and the cluster training).

Projection to 150 x 8,000 series on 16 and 64 cores: linear in series from this run, the driver's CPU time
(segmentation, cutting and sending each bucket's rows, the training frame, receiving) serial, the workers' CPU
time divided over the cores; the cluster's overhead (scheduling, serialisation) is inside the measured CPU
times. LightGBM, which trains on at most `models.global_max_series` sampled series, is counted as if it grew
with the series (pessimistic above that count); the `_capped` figures scale its phase to the series it trains
on instead.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import warnings
from datetime import timedelta

import polars as pl

from bench.common import GIB, busy_cpu_seconds, header, markdown_table, publish

NAME = "forecast_nightly"
GOAL_SERIES = 150 * 8_000
GOAL_SECONDS = 3_600
PROJECTED_CORES = (16, 64)


def _cpu() -> float:
    """CPU seconds of the calling process (the driver here, each worker through `client.run`)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Clock:
    """Wall time, the driver's CPU time and the cluster workers' CPU time (None: the local engine)."""

    def __init__(self, client):
        self.client = client

    def now(self) -> dict:
        workers = sum(self.client.run(_cpu).values()) if self.client is not None else 0.0
        return {"wall": time.perf_counter(), "driver": _cpu(), "workers": workers, "machine": busy_cpu_seconds()}

    @staticmethod
    def since(start: dict, end: dict) -> dict:
        out = {
            "wall_s": end["wall"] - start["wall"],
            "driver_cpu_s": end["driver"] - start["driver"],
            "workers_cpu_s": end["workers"] - start["workers"],
        }
        out["cpu_s"] = out["driver_cpu_s"] + out["workers_cpu_s"]
        # CPU the rest of the machine used meanwhile (other people's work), as a share of its capacity.
        foreign = (end["machine"] - start["machine"]) - out["cpu_s"]
        out["foreign_share"] = max(0.0, foreign) / (out["wall_s"] * (os.cpu_count() or 1)) if out["wall_s"] else 0.0
        return out


def generate(stores: int, skus: int):
    from lakehouse.forecast import world as gen
    from lakehouse.forecast.data import CaseData

    world = gen.WorldConfig(stores=stores, skus=skus)
    tables = gen.master_tables(world)
    sales = pl.concat([gen.store_sales(world, tables, s) for s in tables["stores"]["store_id"]])
    data = CaseData(
        tables["stores"], tables["products"], sales, tables["promotions"], tables["events"], tables["covariates"]
    )
    return world, data


def refit(clock: Clock, known, settings, periods, previous=None) -> tuple[object, dict]:
    """`fit_models` timed by phase: segmentation, statistical fits (to its first log line), LightGBM."""
    from lakehouse.forecast.models import fit_models
    from lakehouse.forecast.segmentation import segment_series

    marks = [clock.now()]
    segments = segment_series(known, settings, periods)
    marks.append(clock.now())
    fitted = fit_models(
        known, settings, periods, segments=segments, previous=previous, log=lambda _msg: marks.append(clock.now())
    )
    segmentation, statistical, lightgbm = (Clock.since(a, b) for a, b in zip(marks, marks[1:], strict=False))
    total = Clock.since(marks[0], marks[-1])
    return fitted, {
        "as_of": str(fitted.as_of),
        "series": segments.height,
        **total,
        "segmentation": segmentation,
        "statistical": {**statistical, "families": stat_families(fitted)},
        "lightgbm": {
            **lightgbm,
            "series_routed": segments.filter(pl.col("segment").is_in(["new", "promo"])).height,
            "series_trained_on": min(segments.height, settings.models.global_max_series),
            "rows": fitted.train_rows,
        },
    }


def stat_families(fitted) -> dict:
    """Per statistical candidate: series, how many searched / kept AutoARIMA orders, and the fits' own CPU (from
    the fit's summary: the driver of a Dask refit never unpickles the models)."""
    out: dict[str, dict] = {}
    summary = fitted.stat_summary
    if summary is not None:
        done = summary.filter(pl.col("fitted_as").is_not_null())
        for name, part in done.group_by("candidate"):
            out[name[0]] = {
                "series": part.height,
                "kept_orders": int(part["kept"].sum()),
                "fit_cpu_s": float(part["fit_cpu_s"].sum()),
            }
    else:
        for models in fitted.stat.values():
            for model in models.values():
                family = out.setdefault(model.candidate, {"series": 0, "kept_orders": 0, "fit_cpu_s": 0.0})
                family["series"] += 1
                family["kept_orders"] += type(model).__name__ == "ARIMA"
                family["fit_cpu_s"] += getattr(model, "fit_cpu_s", 0.0)
    for family in out.values():
        family["series_per_cpu_s"] = family["series"] / family["fit_cpu_s"] if family["fit_cpu_s"] else None
    return out


def nightly(clock: Clock, client, fitted, data, origin, settings, periods, node_history, redis_client, run: int):
    from lakehouse.forecast.distributed import forecast_stores
    from lakehouse.forecast.models import forecast_candidates
    from lakehouse.forecast.publish import publish as publish_redis
    from lakehouse.forecast.publish import vectors
    from lakehouse.forecast.reconcile import BOTTOM_UP, aggregate_base_forecasts, reconcile

    t0 = clock.now()
    if client is not None:
        base = forecast_stores(client, forecast_candidates, fitted, data, origin, settings.horizon_periods, settings)
    else:
        base = forecast_candidates(fitted, data, origin, settings.horizon_periods, settings)
    t1 = clock.now()
    aggregate = aggregate_base_forecasts(node_history, sorted(base["ds"].unique().to_list()), periods, settings)
    table = reconcile(base.select("store_id", "sku_id", "ds", "yhat"), aggregate, data.stores, settings).with_columns(
        origin=pl.lit(origin)
    )
    t2 = clock.now()
    publish_redis(redis_client, vectors(table, BOTTOM_UP), f"bench{run}")
    t3 = clock.now()
    return {
        "series": base["unique_id"].n_unique(),
        **Clock.since(t0, t3),
        "forecast_s": t1["wall"] - t0["wall"],
        "reconcile_s": t2["wall"] - t1["wall"],
        "publish_s": t3["wall"] - t2["wall"],
    }


def projection(measured: dict, series: int, cores: int, capped: int | None = None) -> dict:
    """Hours for 150 x 8,000 series on 16 and 64 cores: the driver's CPU serial, the workers' divided over the
    cores (local engine: all CPU divided, the local path being one process); and from the wall time alone.
    With `capped` (LightGBM's `global_max_series`), besides: `_capped_h`, the LightGBM phase scaled to the series
    it trains on (at most `capped`) rather than to every series, the rest linear in series."""
    scale = GOAL_SERIES / series
    out = {}
    for target in PROJECTED_CORES:
        if measured["workers_cpu_s"] > 0:
            seconds = scale * (measured["driver_cpu_s"] + measured["workers_cpu_s"] / target)
        else:
            seconds = scale * measured["cpu_s"] / target
        out[f"{target}_cores_h"] = seconds / 3600
        out[f"{target}_cores_from_wall_h"] = scale * measured["wall_s"] * cores / target / 3600
        if capped and "lightgbm" in measured:
            lgb = measured["lightgbm"]
            lgb_scale = min(GOAL_SERIES, capped) / min(series, capped)
            driver = measured["driver_cpu_s"] - lgb["driver_cpu_s"]
            workers = measured["workers_cpu_s"] - lgb["workers_cpu_s"]
            serial = scale * driver + lgb_scale * lgb["driver_cpu_s"]
            parallel = scale * workers + lgb_scale * lgb["workers_cpu_s"]
            out[f"{target}_cores_capped_h"] = (serial + parallel / target) / 3600
            out[f"{target}_cores_capped_serial_h"] = serial / 3600
    out["meets_goal_on_16_cores"] = out["16_cores_h"] <= GOAL_SECONDS / 3600
    if capped and "16_cores_capped_h" in out:
        out["meets_goal_on_16_cores_capped"] = out["16_cores_capped_h"] <= GOAL_SECONDS / 3600
    return out


def measure(stores: int, skus: int, runs: int, engine: str, scheduler: str | None, workers: int) -> dict:
    import redis as redis_lib

    from lakehouse.common.local_servers import RedisServer
    from lakehouse.common.settings import configured_sources_path
    from lakehouse.forecast.data import periods_of
    from lakehouse.forecast.reconcile import aggregate_history
    from lakehouse.forecast.settings import ForecastSettings

    warnings.simplefilter("ignore")
    world, data = generate(stores, skus)
    print(f"world: {stores} store(s) x {skus} SKUs, {data.sales.height:,} sales rows", flush=True)
    cluster = client = None
    if engine == "dask":
        from dask.distributed import Client, LocalCluster

        if scheduler is None:
            import dask

            # On a shared, overloaded machine a starved worker misses heartbeats and the scheduler would restart it,
            # losing its results: here that is contention, not a failure.
            dask.config.set({"distributed.scheduler.worker-ttl": None})
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            scheduler = cluster.scheduler_address
        client = Client(scheduler)
    try:
        defaults = ForecastSettings.load(configured_sources_path())
        models = {**defaults.models.model_dump(), "selection": "seed", "engine": engine, "dask_scheduler": scheduler}
        settings = defaults.with_(models=models)
        periods = periods_of(settings, data.sales)
        cores = (
            sum(w["nthreads"] for w in client.scheduler_info()["workers"].values()) if client else os.cpu_count() or 1
        )
        clock = Clock(client)
        origin = world.last_day
        first, first_run = refit(clock, data.until(origin - timedelta(days=7)), settings, periods)
        print(f"first refit {first_run['wall_s']:.0f} s: {first_run['statistical']['families']}", flush=True)
        fitted, weekly = refit(clock, data.until(origin), settings, periods, previous=first)
        print(f"weekly refit {weekly['wall_s']:.0f} s: {weekly['statistical']['families']}", flush=True)
        del first

        server = RedisServer().start()
        redis_client = redis_lib.Redis.from_url(server.url)
        node_history = aggregate_history(data.sales, data.stores, settings)
        nights = [
            nightly(clock, client, fitted, data, origin, settings, periods, node_history, redis_client, r)
            for r in range(runs)
        ]
        redis_client.close()
        server.stop()
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    series = weekly["series"]
    night = {k: statistics.median(n[k] for n in nights) for k in nights[0] if k != "series"}
    night["series"] = nights[0]["series"]
    night["series_per_s_per_core"] = night["series"] / night["wall_s"] / cores
    for run in (first_run, weekly):
        run["series_per_s_per_core"] = run["series"] / run["wall_s"] / cores
        run["series_per_cpu_s"] = run["series"] / run["cpu_s"]
        run["projection"] = projection(run, run["series"], cores, settings.models.global_max_series)
    night["projection"] = projection(night, night["series"], cores)
    return {
        "stores": stores,
        "skus": skus,
        "series": series,
        "engine": engine,
        "cluster": ("LocalCluster" if cluster is not None else scheduler) if engine == "dask" else None,
        "cores": cores,
        "segments": dict(fitted.segments.group_by("segment").len().iter_rows()),
        "routing": fitted.routing,
        "arima_search_every": settings.models.arima_search_every,
        "refit_first": first_run,
        "refit_weekly": weekly,
        "nightly": night,
        "nightly_runs": nights,
        "peak_rss_gib_driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
        "goal": {
            "series": GOAL_SERIES,
            "hours": GOAL_SECONDS / 3600,
            "needed_series_per_s_per_core_on_16": GOAL_SERIES / GOAL_SECONDS / 16,
        },
        "projection_assumes": (
            "linear in series from this run; the driver's CPU time (segmentation, windows, training frame, "
            "sending and receiving) serial, the workers' CPU time divided over the cores; the cluster's overhead "
            "(scheduling, serialisation) inside the measured CPU times; LightGBM's sampled training counted as "
            "growing with the series (pessimistic); '_capped': LightGBM's phase (driver and workers) scaled to the "
            "series it trains on, at most models.global_max_series, the rest linear in series, "
            "'_capped_serial_h' its driver part; '_from_wall': wall x this run's cores, linear in cores too"
        ),
    }


def render(payload: dict) -> str:
    r = payload["result"]
    rows = []
    for label, run in (("first refit (every order searched)", r["refit_first"]), ("weekly refit", r["refit_weekly"])):
        fams = run["statistical"]["families"]
        detail = ", ".join(
            f"{name} {f['series']:,} ({f['kept_orders']:,} kept orders) {f['series_per_cpu_s']:.1f}/CPU-s"
            for name, f in fams.items()
            if f["series_per_cpu_s"]
        )
        lgb = run["lightgbm"]
        rows.append(
            [
                label,
                f"{run['wall_s']:.0f} s",
                f"{run['series_per_s_per_core']:.2f}",
                f"{run['series_per_cpu_s']:.2f}",
                f"{run['projection']['16_cores_h']:.2f} / {run['projection']['64_cores_h']:.2f} h"
                + (
                    f" (LightGBM capped: {run['projection']['16_cores_capped_h']:.2f} / "
                    f"{run['projection']['64_cores_capped_h']:.2f} h, serial "
                    f"{run['projection']['16_cores_capped_serial_h']:.2f} h)"
                    if "16_cores_capped_h" in run["projection"]
                    else ""
                ),
                f"driver CPU {run['driver_cpu_s']:.0f} s (statistical {run['statistical']['driver_cpu_s']:.1f} s), "
                f"workers {run['workers_cpu_s']:.0f} s; {detail}; "
                f"LightGBM phase {lgb['wall_s']:.0f} s ({lgb['rows']:,} rows); "
                f"segmentation {run['segmentation']['wall_s']:.0f} s; others' CPU share {run['foreign_share']:.2f}",
            ]
        )
    n = r["nightly"]
    rows.append(
        [
            "nightly path",
            f"{n['wall_s']:.1f} s",
            f"{n['series_per_s_per_core']:.1f}",
            f"{n['series'] / n['cpu_s']:.1f}",
            f"{n['projection']['16_cores_h']:.2f} / {n['projection']['64_cores_h']:.2f} h",
            f"forecast {n['forecast_s']:.1f} s, reconcile {n['reconcile_s']:.1f} s, publish {n['publish_s']:.2f} s",
        ]
    )
    return (
        f"{r['stores']} store(s) x {r['skus']:,} SKUs ({r['series']:,} series), engine {r['engine']}"
        f" ({r['cluster']}), {r['cores']} cores, driver peak RSS {r['peak_rss_gib_driver']:.2f} GiB\n\n"
        + markdown_table(
            ["path", "wall", "series/s/core", "series/CPU-s", "150 x 8,000 on 16 / 64 cores", "detail"], rows
        )
        + f"\n\nGoal: 150 x 8,000 in {r['goal']['hours']:.0f} h on 16 cores "
        f"({r['goal']['needed_series_per_s_per_core_on_16']:.1f} series/s/core). Projection assumes: "
        + r["projection_assumes"]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stores", type=int, default=1)
    p.add_argument("--skus", type=int, default=8_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--engine", choices=("dask", "local"), default="dask")
    p.add_argument("--scheduler", help="a running Dask scheduler (tcp://host:8786); default: a LocalCluster")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="LocalCluster worker processes")
    p.add_argument("--tag", help="results file bench/results/forecast_nightly-<tag>.json (default: the main file)")
    args = p.parse_args(argv)
    started = header(NAME, args.runs)  # the load average before the run
    result = measure(args.stores, args.skus, args.runs, args.engine, args.scheduler, args.workers)
    name = f"{NAME}-{args.tag}" if args.tag else NAME
    return publish(name, {**started, "result": result}, render)


if __name__ == "__main__":
    sys.exit(main())
