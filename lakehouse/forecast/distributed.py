"""The forecasting case on a Dask cluster (`models.engine: dask`): every model family of the weekly refit and the
nightly stores, handed to an existing distributed engine rather than stretched over one process.

- Statistical fits (statsforecast) through fugue, partitioned by store (and within a store by a hash of the series
  id when there are few stores): each task fits its series' models (`statistical.fit_partition`), the same call
  the local engine makes.
- LightGBM through mlforecast's distributed API (`DistributedMLForecast` with a Dask LightGBM): the target's lags
  and rolling means are computed on the workers, partitioned by series, and the booster is trained data-parallel
  (`lightgbm.dask`), then brought back as an ordinary `MLForecast` (`to_local`), so the fitted state, the
  registry and the nightly path are the engine's whichever engine fitted it.
- Nightly forecasts: one task per store (`forecast_candidates` on the store's series from the fitted state).

The cluster is `models.dask_scheduler` (`tcp://host:8786`), or without it a LocalCluster in this process on this
machine's cores. The frames a task needs are built in the calling process and shipped with the task.

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
    client, windows: pd.DataFrame, freq: str, season: int, settings: ForecastSettings, as_of: str | None = None
) -> pd.DataFrame:
    """`statistical.fit_partition` over the cluster (fugue), partitioned by store and, where there are fewer stores
    than eight tasks per worker thread, by a stable hash of the series id within each store: one store of 8,000
    series is spread over every worker rather than fitted by one task. Each group is its own partition, spread
    evenly (fugue's `even` algorithm: hashing groups into partitions piled up to 11 of 16 on one of two workers)."""
    import zlib

    import fugue.api as fa

    threads = worker_threads(client)
    # Per series, not per row (a window is ~100 rows): the driver's string work was most of its CPU here.
    codes, uids = pd.factorize(windows["unique_id"])
    series_store = pd.Series([uid.split("/", 1)[0] for uid in uids])
    stores = series_store.nunique()
    chunks = max(1, -(-8 * threads // stores))  # per store
    series_chunk = [zlib.crc32(uid.encode()) % chunks for uid in uids]
    windows = windows.assign(store_id=series_store.to_numpy()[codes], chunk=pd.Series(series_chunk).to_numpy()[codes])
    fitted = fa.transform(
        windows,
        _fit_stores,
        schema="unique_id:str,fitted:bytes",
        params={"freq": freq, "season": season, "settings": settings, "as_of": as_of},
        partition={"by": ["store_id", "chunk"], "num": stores * chunks, "algo": "even"},
        engine=client,
        as_local=True,
    )
    return fitted if isinstance(fitted, pd.DataFrame) else fitted.as_pandas()


def _fit_stores(df: pd.DataFrame, freq: str, season: int, settings: ForecastSettings, as_of) -> pd.DataFrame:
    from lakehouse.forecast.statistical import fit_partition

    return fit_partition(df.drop(columns=["store_id", "chunk"]), freq, season, settings, as_of)


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
    )
    model.fit(dd.from_pandas(frame, npartitions=partitions, sort=False), static_features=static, keep_last_n=keep)
    return model.to_local()


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
            replace(models, stat={store: models.stat.get(store, {})}, lightgbm=None),
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
