"""Nightly forecast path for one store, and the weekly refit, through the case's pipeline functions.

    .venv/bin/python -m bench.forecast_nightly [--skus 8000] [--runs 3]

One store with `--skus` SKUs (the seed's 8,000 by default) over 3 years is generated (not
timed). The routing is the seed's (AutoARIMA for stable series, MSTL for seasonal ones, LightGBM
for promotions, family mean + LightGBM for new products), so the statistical models' nightly
forward pass is measured, as it was before the models were chosen on validation. Then, in this
process:
  * weekly refit (once): segmentation, AutoARIMA/MSTL fits on the bounded window, the training
    frame and the global LightGBM (`fit_models`);
  * nightly path (median of --runs): point-in-time features and the forecast from fitted state
    (`forecast_candidates`), aggregate base forecasts and hierarchicalforecast reconciliation,
    the atomic publication to a private redis-server. Raw peer: `model.forward` over every
    statistical series.
Series per second per core uses every core of the machine (conservative: the path is mostly
single-threaded). The extrapolation to 150 x 8,000 series on 16 cores assumes stores are
independent (the nightly job's store partitions, several runs or a k8s executor).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import warnings

import numpy as np
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


def measure(skus: int, runs: int) -> dict:
    import redis as redis_lib

    from lakehouse.common.local_servers import RedisServer
    from lakehouse.common.settings import configured_sources_path
    from lakehouse.forecast import world as gen
    from lakehouse.forecast.data import CaseData, periods_of
    from lakehouse.forecast.models import STAT_MODELS, fit_models, forecast_candidates
    from lakehouse.forecast.publish import publish as publish_redis
    from lakehouse.forecast.publish import vectors
    from lakehouse.forecast.reconcile import BOTTOM_UP, aggregate_base_forecasts, aggregate_history, reconcile
    from lakehouse.forecast.settings import ForecastSettings

    warnings.simplefilter("ignore")
    world = gen.WorldConfig(stores=1, skus=skus)
    defaults = ForecastSettings.load(configured_sources_path())
    settings = defaults.with_(models={**defaults.models.model_dump(), "selection": "seed"})
    tables = gen.master_tables(world)
    store = tables["stores"]["store_id"][0]
    data = CaseData(
        tables["stores"],
        tables["products"],
        gen.store_sales(world, tables, store),
        tables["promotions"],
        tables["events"],
        tables["covariates"],
    )
    periods = periods_of(settings, data.sales)
    origin = world.last_day
    print(f"world: 1 store x {skus} SKUs, {data.sales.height:,} sales rows", flush=True)

    fitted, refit_s = _timed(lambda: fit_models(data.until(origin), settings, periods))
    stat_series = sum(len(m) for m in fitted.stat.values())
    print(
        f"refit {refit_s:.1f}s ({stat_series} statistical series, LightGBM on {fitted.train_rows:,} rows)", flush=True
    )

    server = RedisServer().start()
    client = redis_lib.Redis.from_url(server.url)
    node_history = aggregate_history(data.sales, data.stores, settings)

    def nightly(run: int) -> dict:
        t0 = time.perf_counter()
        base = forecast_candidates(fitted, data, origin, settings.horizon_periods, settings)
        t1 = time.perf_counter()
        aggregate = aggregate_base_forecasts(node_history, sorted(base["ds"].unique().to_list()), periods, settings)
        table = reconcile(
            base.select("store_id", "sku_id", "ds", "yhat"), aggregate, data.stores, settings
        ).with_columns(origin=pl.lit(origin))
        t2 = time.perf_counter()
        publish_redis(client, vectors(table, BOTTOM_UP), f"bench{run}")
        t3 = time.perf_counter()
        return {
            "series": base["unique_id"].n_unique(),
            "forecast_s": t1 - t0,
            "reconcile_s": t2 - t1,
            "publish_s": t3 - t2,
            "total_s": t3 - t0,
        }

    nights = [nightly(r) for r in range(runs)]
    client.close()
    server.stop()

    raw_stat = raw_stat_forward(fitted, data, settings, runs)
    series = nights[0]["series"]
    total = statistics.median(n["total_s"] for n in nights)
    cores = os.cpu_count() or 1
    per_core = series / total / cores
    extrapolated = GOAL_SERIES / (per_core * GOAL_CORES)
    return {
        "skus": skus,
        "series": series,
        "segments": dict(fitted.segments.group_by("segment").len().iter_rows()),
        "routing": fitted.routing,
        "cores": cores,
        "nightly": {
            "wall_s": total,
            "forecast_s": statistics.median(n["forecast_s"] for n in nights),
            "reconcile_s": statistics.median(n["reconcile_s"] for n in nights),
            "publish_s": statistics.median(n["publish_s"] for n in nights),
            "series_per_s": series / total,
            "series_per_s_per_core": per_core,
            "raw_stat_forward_s": statistics.median(raw_stat),
            "stat_series": stat_series,
            "stat_models": [m for m in STAT_MODELS if m in fitted.routing.values()],
        },
        "refit": {"wall_s": refit_s, "series_per_s_per_core": series / refit_s / cores},
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


def raw_stat_forward(fitted, data, settings, runs: int) -> list[float]:
    """The raw peer of the statistical forecasts: `model.forward` over every fitted series' window, timed."""
    from lakehouse.forecast.data import history
    from lakehouse.forecast.models import lookback

    recent = history(data).group_by("unique_id", maintain_order=True).tail(lookback(fitted, settings))
    windows = {
        uid: part["y"].to_numpy().astype(np.float64)
        for (uid,), part in recent.group_by(["unique_id"], maintain_order=True)
    }

    def raw_forward():
        for models in fitted.stat.values():
            for uid, model in models.items():
                model.forward(y=windows[uid], h=settings.horizon_periods)

    return [_timed(raw_forward)[1] for _ in range(runs)]


def render(payload: dict) -> str:
    r = payload["result"]
    n, f, e = r["nightly"], r["refit"], r["extrapolation"]
    rows = [
        [
            "nightly path (features + fitted-state forecast + reconciliation + publish)",
            f"{n['wall_s']:.1f} s",
            f"{n['series_per_s_per_core']:.1f}",
            f"forecast {n['forecast_s']:.1f} s, reconcile {n['reconcile_s']:.1f} s, publish {n['publish_s']:.2f} s",
        ],
        [
            "raw model.forward over the statistical series",
            f"{n['raw_stat_forward_s']:.1f} s",
            "-",
            f"{n['stat_series']} series",
        ],
        [
            "weekly refit (segments, statistical fits, LightGBM)",
            f"{f['wall_s']:.1f} s",
            f"{f['series_per_s_per_core']:.2f}",
            "",
        ],
    ]
    return (
        f"1 store x {r['skus']:,} SKUs ({r['series']:,} series) on {r['cores']} cores, "
        f"peak RSS {r['peak_rss_gib']:.2f} GiB\n\n"
        + markdown_table(["path", "wall", "series/s/core", "detail"], rows)
        + f"\n\n150 x 8,000 series on 16 cores: nightly {e['nightly_hours']:.2f} h (goal {e['goal_hours']:.0f} h, "
        f"needs {e['needed_series_per_s_per_core']:.1f} series/s/core): "
        + ("meets" if e["meets_goal"] else "misses")
        + f" the goal; weekly refit {e['weekly_refit_hours_on_16_cores']:.1f} h"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skus", type=int, default=8_000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)
    payload = {**header(NAME, args.runs), "result": measure(args.skus, args.runs)}
    return publish(NAME, payload, render)


if __name__ == "__main__":
    sys.exit(main())
