"""The forecasting case on a Dask cluster (`models.engine: dask`): every model family of the weekly refit and the
nightly stores, handed to an existing distributed engine rather than stretched over one process.

- Statistical fits (statsforecast), one Dask task per store and hash bucket of the series id (enough buckets for
  eight tasks per worker thread): each task gets its series' raw rows of the last months, builds their windows
  and fits (`statistical.fit_series`, the same call the local engine makes), and returns its models as one
  pickled blob the driver keeps unopened (`statistical.StoreModels`) with one summary row per series. The
  driver's share is vectorised: no per-series window, pickle or Python loop.
- LightGBM through mlforecast's distributed API (`DistributedMLForecast` with a Dask LightGBM): the target's lags
  and rolling means are computed on the workers, partitioned by series, and the booster is trained data-parallel
  (`lightgbm.dask`), then brought back as an ordinary `MLForecast` (`to_local`), so the fitted state, the
  registry and the nightly path are the engine's whichever engine fitted it.
- Nightly forecasts: one task per store (`forecast_candidates` on the store's series from the fitted state).

The cluster is `models.dask_scheduler` (`tcp://host:8786`), or without it a LocalCluster in this process on this
machine's cores. The rows a task needs are cut in the calling process and shipped with the task.

Equality with the local engine: the statistical fits and, on one worker, LightGBM give the same forecasts; with
several workers LightGBM's data-parallel training (histograms merged across workers, bagging drawn per worker)
grows slightly different trees (tests/integration/test_forecast_engines.py states the tolerance).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import pandas as pd
import polars as pl

from lakehouse.forecast.settings import LIGHTGBM, ForecastSettings


def engine_client(settings: ForecastSettings):
    """A context giving the Dask client of `models.engine: dask`, or None for the local engine."""
    return dask_client(settings) if settings.models.engine == "dask" else nullcontext(None)


@contextmanager
def dask_client(settings: ForecastSettings) -> Iterator[object]:
    """The cluster at `models.dask_scheduler`, or an in-process LocalCluster of one single-threaded worker per core
    (LightGBM and statsforecast are single-threaded per task: parallelism comes from the workers)."""
    from dask.distributed import Client, LocalCluster

    scheduler = settings.models.dask_scheduler
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    cores = os.cpu_count() or 1
    with (
        LocalCluster(n_workers=cores, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


def worker_threads(client) -> int:
    return max(1, sum(w["nthreads"] for w in client.scheduler_info()["workers"].values()))


# --------------------------------------------------------------------------- statistical models


def fit_statistical(
    client,
    buckets: list[tuple[str, pl.DataFrame, pl.DataFrame]],
    window: int,
    freq: str,
    season: int,
    settings: ForecastSettings,
    as_of=None,
    every_weeks: int | None = None,
) -> list[tuple[str, bytes, pl.DataFrame]]:
    """`statistical.fit_series` over the cluster, one task per (store, hash bucket): each task gets the bucket's
    raw rows (`statistical.recent_rows`) and its series (candidate, previous orders), builds the windows, fits,
    and returns its models as one pickled blob with a summary row per series. The driver neither builds a window
    nor unpickles a model: its share is a few vectorised polars operations and one blob per task (store,
    blob, summary), in the order given."""
    futures = [
        client.submit(
            _fit_bucket, rows, series, window, freq, season, settings, as_of, every_weeks, pure=False, key=f"stat-{i}"
        )
        for i, (_, rows, series) in enumerate(buckets)
    ]
    results = client.gather(futures)
    return [(store, blob, summary) for (store, _, _), (blob, summary) in zip(buckets, results, strict=True)]


def _fit_bucket(rows, series, window, freq, season, settings, as_of, every_weeks) -> tuple[bytes, pl.DataFrame]:
    import pickle

    from lakehouse.forecast.statistical import fit_series

    models, summary = fit_series(rows, series, window, freq, season, settings, as_of, every_weeks)
    return pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL), summary


# --------------------------------------------------------------------------- LightGBM


def fit_lightgbm(client, frame: pd.DataFrame, static: list[str], keep: int, settings: ForecastSettings, periods):
    """The global model trained on the cluster through `DistributedMLForecast` (features computed on the workers,
    partitioned by series; a Dask LightGBM with the settings' parameters), returned as a local `MLForecast`."""
    import dask.dataframe as dd
    from mlforecast.distributed import DistributedMLForecast
    from mlforecast.distributed.models.dask.lgb import DaskLGBMForecast
    from mlforecast.lag_transforms import RollingMean

    cadence = periods.cadence
    partitions = max(1, min(worker_threads(client), frame["unique_id"].nunique()))
    model = DistributedMLForecast(
        models={LIGHTGBM: DaskLGBMForecast(**settings.models.lightgbm)},
        freq=periods.alias,
        lags=list(cadence.lags),
        lag_transforms={cadence.lags[0]: [RollingMean(window_size=w) for w in cadence.rolling_windows]},
        date_features=list(cadence.date_features),
        engine=client,
        num_partitions=partitions,
        lag_transforms_namer=_name_without_dots,
    )
    model.fit(dd.from_pandas(frame, npartitions=partitions, sort=False), static_features=static, keep_last_n=keep)
    return model.to_local()


def _name_without_dots(tfm, lag, *args) -> str:
    """mlforecast's own namer for the distributed API, at module level: its default is a function local to
    `DistributedMLForecast.__init__`, which the fitted model keeps and pickle refuses, so a Dask-fitted state
    could not be saved."""
    from mlforecast.core import _build_transform_name

    return _build_transform_name(tfm, lag, args).replace(".", "_")


# --------------------------------------------------------------------------- nightly stores


def forecast_stores(client, forecast, models, data, origin, horizon: int, settings: ForecastSettings) -> pl.DataFrame:
    """`forecast` (models.forecast_candidates, passed in so this module stays below models) of each store on the
    cluster, one task per store, from the same fitted state (the global model sent once to every worker, each
    store's statistical models with its task)."""
    from dataclasses import replace

    stores = sorted(data.sales["store_id"].unique().to_list())
    if not stores:
        return forecast(models, data, origin, horizon, settings)
    lightgbm = client.scatter(models.lightgbm, broadcast=True)
    tasks = [
        client.submit(
            _forecast_store,
            forecast,
            replace(
                models,
                stat={store: models.stat.get(store, {})},
                lightgbm=None,
                segments=models.segments.filter(pl.col("store_id") == store),
                selection=None,
                stat_summary=None,
            ),
            lightgbm,
            replace(data, sales=data.sales.filter(pl.col("store_id") == store)),
            origin,
            horizon,
            settings,
        )
        for store in stores
    ]
    return pl.concat(client.gather(tasks), how="vertical_relaxed").sort("unique_id", "origin", "step")


def _forecast_store(forecast, models, lightgbm, data, origin, horizon: int, settings: ForecastSettings) -> pl.DataFrame:
    from dataclasses import replace

    return forecast(replace(models, lightgbm=lightgbm), data, origin, horizon, settings)
