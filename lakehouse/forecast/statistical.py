"""The statistical models (statsforecast): what they are and their weekly fits, in this process or on
a Dask cluster through fugue (`models.engine: dask`).

Imported when a fit runs, not when the code location loads: fugue reads the transformer's
interface from its type annotations, which name pandas.
"""

from __future__ import annotations

import pickle
import warnings

import pandas as pd

from lakehouse.forecast.settings import ForecastSettings


def stat_model(name: str, season: int, settings: ForecastSettings):
    from statsforecast.models import MSTL, AutoARIMA, AutoETS

    if name == "AutoARIMA":
        return AutoARIMA(season_length=season, **settings.models.arima)
    return MSTL(season_length=[season], trend_forecaster=AutoETS(model="ZZN"))


def fit_partition(df: pd.DataFrame, freq: str, season: int, settings: ForecastSettings) -> pd.DataFrame:
    """Fit one model per series of a frame (one or several model names): unique_id, fitted (pickled).
    A series whose fit fails gets the seasonal naive, under the same alias."""
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    rows = []
    for name, part in df.groupby("model"):
        sf = StatsForecast(
            models=[stat_model(name, season, settings)], freq=freq, n_jobs=1, fallback_model=SeasonalNaive(season)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sf.fit(part[["unique_id", "ds", "y"]])
        rows += [(uid, pickle.dumps(model)) for uid, model in zip(sf.uids, sf.fitted_[:, 0])]
    return pd.DataFrame(rows, columns=["unique_id", "fitted"])


def fit_on_dask(windows: pd.DataFrame, freq: str, season: int, settings: ForecastSettings) -> pd.DataFrame:
    """`fit_partition` over the cluster's workers (`models.dask_scheduler`, or a local in-process cluster)."""
    import fugue.api as fa
    from dask.distributed import Client

    scheduler = settings.models.dask_scheduler
    with Client(scheduler) if scheduler else Client(processes=False, n_workers=1, threads_per_worker=2) as client:
        workers = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
        fitted = fa.transform(
            windows,
            fit_partition,
            schema="unique_id:str,fitted:bytes",
            params={"freq": freq, "season": season, "settings": settings},
            partition={"by": "model", "num": max(2, workers)},
            engine=client,
            as_local=True,
        )
    return fitted if isinstance(fitted, pd.DataFrame) else fitted.as_pandas()
