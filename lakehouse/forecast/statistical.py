"""The statistical models (statsforecast): what they are, the history each needs, and their weekly fits (in this
process, or in each task of a Dask cluster through fugue: `distributed.py`).

Each model declares the periods of history it needs at the fit date (`min_history`): AutoARIMA and
MSTL two seasons (104 weekly rows), the seasonal naive one season, ETS without season 8 periods, Theta
4. A series too short for the model its segment is routed to takes the first of `SUBSTITUTES` that
fits; one too short for all of them is left to the global model (the new-product path).

Imported when a fit runs, not when the code location loads: fugue reads the transformer's
interface from its type annotations, which name pandas.
"""

from __future__ import annotations

import pickle
import warnings

import pandas as pd

from lakehouse.forecast.settings import ForecastSettings

SUBSTITUTES = ("SeasonalNaive", "AutoETS", "Theta")  # in this order, for a series too short for its model


def min_history(name: str, season: int) -> int:
    """Periods of history `name` needs at the fit date."""
    return {"AutoARIMA": 2 * season, "MSTL": 2 * season, "SeasonalNaive": season, "AutoETS": 8, "Theta": 4}[name]


def fitting_model(name: str, periods: int, season: int) -> str | None:
    """The model a series with `periods` of history gets for candidate `name`: itself, or the first substitute
    whose needs it meets; None when none fits."""
    return next((m for m in (name, *SUBSTITUTES) if periods >= min_history(m, season)), None)


def stat_model(name: str, season: int, settings: ForecastSettings):
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, SeasonalNaive, Theta

    if name == "AutoARIMA":
        return AutoARIMA(season_length=season, **settings.models.arima)
    if name == "MSTL":
        return MSTL(season_length=[season], trend_forecaster=AutoETS(model="ZZN"))
    if name == "SeasonalNaive":
        return SeasonalNaive(season)
    if name == "AutoETS":
        return AutoETS(model="ZZN", season_length=1)
    return Theta(season_length=1)


def fit_partition(df: pd.DataFrame, freq: str, season: int, settings: ForecastSettings) -> pd.DataFrame:
    """Fit one model per series of a frame (unique_id, ds, y, model: the model to fit, candidate: the routed
    model it stands for): unique_id, fitted (pickled, its `candidate` attribute set). A series whose fit
    fails gets the seasonal naive, under the same alias."""
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    rows = []
    for name, part in df.groupby("model"):
        sf = StatsForecast(
            models=[stat_model(name, season, settings)], freq=freq, n_jobs=1, fallback_model=SeasonalNaive(season)
        )
        candidate = dict(zip(part["unique_id"], part["candidate"], strict=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sf.fit(part[["unique_id", "ds", "y"]])
        for uid, model in zip(sf.uids, sf.fitted_[:, 0], strict=True):
            model.candidate = candidate[uid]
            rows.append((uid, pickle.dumps(model)))
    return pd.DataFrame(rows, columns=["unique_id", "fitted"])
