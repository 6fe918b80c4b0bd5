"""The statistical models (statsforecast): what they are, the history each needs, and their weekly fits (in this
process, or in each task of a Dask cluster through fugue: `distributed.py`).

Each model declares the periods of history it needs at the fit date (`min_history`): AutoARIMA and
MSTL two seasons (104 weekly rows), the seasonal naive one season, ETS without season 8 periods, Theta
4. A series too short for the model its segment is routed to takes the first of `SUBSTITUTES` that
fits; one too short for all of them is left to the global model (the new-product path).

AutoARIMA's order search (a stepwise walk over some twenty candidate models, each one an optimisation)
costs about ten times the estimation of one model's parameters. With `models.arima_search_every` (weeks),
a weekly refit searches again only for a rotating share of the series (1/k of them, by a stable hash of the
series id, so that every week costs the same) and for those whose orders are that old; the others keep the
orders of their last search and have their parameters re-estimated on the new window (`reusable_orders`).

Imported when a fit runs, not when the code location loads: fugue reads the transformer's
interface from its type annotations, which name pandas.
"""

from __future__ import annotations

import pickle
import time
import warnings
import zlib
from datetime import date

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


def arima_orders(model) -> str | None:
    """'p,d,q,P,D,Q,mean,drift|searched' of a fitted AutoARIMA (its orders, constant terms and the date of
    the search that found them), or None for any other model or one fitted before searches were dated."""
    spec, searched = getattr(model, "model_", None), getattr(model, "orders_as_of", None)
    if not isinstance(spec, dict) or "arma" not in spec or searched is None:
        return None
    p, q, P, Q, _, d, D = (int(v) for v in spec["arma"])
    coef = spec["coef"]
    return f"{p},{d},{q},{P},{D},{Q},{int('intercept' in coef)},{int('drift' in coef)}|{searched}"


def reusable_orders(uid: str, orders: str | None, as_of: date, every_weeks: int | None) -> str:
    """The orders a refit at `as_of` keeps for series `uid` (its previous fit's `arima_orders`), or '' when
    this refit searches again: no earlier search, searches every time (`every_weeks` None), orders searched
    `every_weeks` weeks ago or more, or this week is the series' turn (stable hash of its id modulo k)."""
    if not orders or not every_weeks:
        return ""
    searched = date.fromisoformat(orders.rsplit("|", 1)[1])
    turn = zlib.crc32(uid.encode()) % every_weeks == (as_of.toordinal() // 7) % every_weeks
    return "" if turn or (as_of - searched).days >= 7 * every_weeks else orders


def _refit_orders(y, orders: str, season: int):
    """An ARIMA with a previous search's orders, its parameters estimated on `y` (None when that fails)."""
    from statsforecast.models import ARIMA

    spec, searched = orders.rsplit("|", 1)
    p, d, q, P, D, Q, mean, drift = (int(v) for v in spec.split(","))
    model = ARIMA(
        order=(p, d, q),
        seasonal_order=(P, D, Q),
        season_length=season,
        include_mean=bool(mean),
        include_drift=bool(drift),
        alias="AutoARIMA",
    )
    try:
        model.fit(y=y)
    except Exception:  # e.g. a non-stationary estimate on the new window: the series is searched again
        return None
    model.orders_as_of = searched
    return model


def fit_partition(
    df: pd.DataFrame, freq: str, season: int, settings: ForecastSettings, as_of: str | None = None
) -> pd.DataFrame:
    """Fit one model per series of a frame (unique_id, ds, y, model: the model to fit, candidate: the routed
    model it stands for; optional orders: `reusable_orders`, AutoARIMA's orders to keep): unique_id, fitted
    (pickled, its `candidate` attribute set). AutoARIMA's searched models are dated `as_of` (`orders_as_of`);
    a series with orders to keep has only its parameters estimated (searched when that fails). A series whose
    fit fails gets the seasonal naive, under the same alias. Each model carries what its fit cost, `fit_cpu_s`
    (CPU seconds of the fitting thread; a model group's fit shared evenly over its series)."""
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    rows = []
    if "orders" in df.columns:
        kept = df[(df["model"] == "AutoARIMA") & (df["orders"] != "")]
        refitted = set()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for uid, part in kept.groupby("unique_id", sort=False):
                started = time.thread_time()
                model = _refit_orders(part["y"].to_numpy(dtype="float64"), part["orders"].iloc[0], season)
                if model is not None:
                    model.candidate = part["candidate"].iloc[0]
                    model.fit_cpu_s = time.thread_time() - started
                    rows.append((uid, pickle.dumps(model)))
                    refitted.add(uid)
        df = df[~df["unique_id"].isin(refitted)]
    for name, part in df.groupby("model"):
        sf = StatsForecast(
            models=[stat_model(name, season, settings)], freq=freq, n_jobs=1, fallback_model=SeasonalNaive(season)
        )
        candidate = dict(zip(part["unique_id"], part["candidate"], strict=True))
        started = time.thread_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sf.fit(part[["unique_id", "ds", "y"]])
        each = (time.thread_time() - started) / max(1, len(sf.uids))
        for uid, model in zip(sf.uids, sf.fitted_[:, 0], strict=True):
            model.candidate = candidate[uid]
            model.fit_cpu_s = each
            if name == "AutoARIMA" and as_of is not None:
                model.orders_as_of = as_of
            rows.append((uid, pickle.dumps(model)))
    return pd.DataFrame(rows, columns=["unique_id", "fitted"])
