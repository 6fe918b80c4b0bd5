"""The statistical models (statsforecast): what they are, the history each needs, and their weekly fits
(`fit_series`: in this process, or in each task of a Dask refit, on the raw rows of a store's hash bucket:
`distributed.py`).

Each model declares the periods of history it needs at the fit date (`min_history`): AutoARIMA and
MSTL two seasons (104 weekly rows), the seasonal naive one season, ETS without season 8 periods, Theta
4. A series too short for the model its segment is routed to takes the first of `SUBSTITUTES` that
fits; one too short for all of them is left to the global model (the new-product path).

AutoARIMA's order search (a stepwise walk over some twenty candidate models, each one an optimisation)
costs about ten times the estimation of one model's parameters. With `models.arima_search_every` (weeks),
a weekly refit searches again only for a rotating share of the series (1/k of them, by a stable hash of the
series id, so that every week costs the same) and for those whose orders are that old; the others keep the
orders of their last search and have their parameters re-estimated on the new window (`reusable_orders`).

Imported when a fit runs or a fitted state is loaded, not when the code location loads.
"""

from __future__ import annotations

import pickle
import time
import warnings
import zlib
from collections.abc import Mapping
from datetime import date, timedelta

import pandas as pd
import polars as pl

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


def previous_orders(series: pl.DataFrame, settings: ForecastSettings, as_of: date | None, previous) -> pl.DataFrame:
    """unique_id, previous: the orders of the previous fit's (a `FittedModels`) AutoARIMA (`arima_orders`) where
    this fit may keep them (`reusable_orders` decides per series where the fit runs)."""
    schema = {"unique_id": pl.String, "previous": pl.String}
    every = settings.arima_search_weeks
    same_search = (
        previous is not None
        and (previous.config or {}).get("models", {}).get("arima") == settings.models.arima
        and previous.periods.cadence.season == settings.cadence.season
    )
    if not same_search or as_of is None or not every:  # orders found under other bounds are searched again
        return pl.DataFrame(schema=schema)
    if previous.stat_summary is not None:
        return previous.stat_summary.filter(
            (pl.col("candidate") == "AutoARIMA") & pl.col("orders").is_not_null()
        ).select("unique_id", previous="orders")
    rows = []  # a fit from before the summary: read its models
    for uid in series.filter(pl.col("candidate") == "AutoARIMA")["unique_id"].to_list():
        model = previous.stat.get(uid.split("/", 1)[0], {}).get(uid)
        if getattr(model, "candidate", None) == "AutoARIMA":
            rows.append((uid, arima_orders(model)))
    return pl.DataFrame(rows, schema=schema, orient="row")


NO_STAT_FIT = "none fits: global model"


def fit_counts(summary: pl.DataFrame | None) -> pl.DataFrame:
    """candidate, model, series: which model each candidate's series got (too short for every one: none)."""
    schema = {"candidate": pl.String, "model": pl.String, "series": pl.UInt32}
    if summary is None or summary.is_empty():
        return pl.DataFrame(schema=schema)
    return (
        summary.select("unique_id", "candidate", pl.col("model").fill_null(NO_STAT_FIT))
        .unique()
        .group_by("candidate", "model")
        .agg(pl.len().alias("series"))
        .sort("candidate", "model")
        .cast(schema)
    )


class StoreModels(Mapping):
    """One store's fitted statistical models (unique_id -> model), held as the pickled blobs the cluster's tasks
    returned: unpickled on first use, and pickled as those blobs. The driver of a Dask refit receives, saves and
    forwards a store's models without unpickling one of them; the worker that forecasts the store unpickles it."""

    def __init__(self, blobs: list[bytes]):
        self.blobs = list(blobs)
        self._models: dict | None = None

    def _loaded(self) -> dict:
        if self._models is None:
            models: dict = {}
            for blob in self.blobs:
                models.update(pickle.loads(blob))
            self._models = models
        return self._models

    def __getitem__(self, uid: str):
        return self._loaded()[uid]

    def __iter__(self):
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())

    def __getstate__(self) -> dict:
        return {"blobs": self.blobs}

    def __setstate__(self, state: dict) -> None:
        self.blobs, self._models = state["blobs"], None


SUMMARY_SCHEMA = {
    "unique_id": pl.String,
    "candidate": pl.String,
    "model": pl.String,  # the model chosen for the series' history (a substitute when short; null: none fits)
    "fitted_as": pl.String,  # the fitted model's alias (the seasonal naive where the chosen model's fit failed)
    "kept": pl.Boolean,  # AutoARIMA's previous orders kept, parameters re-estimated
    "orders": pl.String,  # `arima_orders` of the fitted model
    "fit_cpu_s": pl.Float64,
}


def recent_rows(hist: pl.DataFrame, window: int, span_days: int) -> pl.DataFrame:
    """The rows of `hist` (unique_id, ds, y, ...) that hold each series' last `window` rows: those of the last
    `span_days` before the latest date, and all the rows of a series with fewer than `window` there. A vectorised
    cut that lets a refit ship a few months of rows rather than the whole history; the windows built from it
    (`fit_series`) are the ones the whole history gives."""
    if hist.is_empty():
        return hist
    cut = hist["ds"].max() - timedelta(days=span_days)
    recent = hist.filter(pl.col("ds") > cut)
    full = recent.group_by("unique_id").len().filter(pl.col("len") >= window).select("unique_id")
    return pl.concat([hist.filter(pl.col("ds") <= cut).join(full, on="unique_id", how="anti"), recent])


def fit_series(
    rows: pl.DataFrame,
    series: pl.DataFrame,
    window: int,
    freq: str,
    season: int,
    settings: ForecastSettings,
    as_of: date | None = None,
    every_weeks: int | None = None,
) -> tuple[dict[str, object], pl.DataFrame]:
    """The statistical models of a set of series, from their raw rows: the same call in this process (local
    engine) and in each task of a Dask refit (`distributed.fit_statistical`). `rows`: unique_id, ds, y (at least
    each series' last `window` rows, `recent_rows`); `series`: unique_id, candidate (the routed model) and
    previous (the previous fit's `arima_orders`, null for none). Each series' bounded window is its last `window`
    rows; a series too short for its candidate gets the first substitute that fits (`fitting_model`), one too
    short for all of them none; AutoARIMA keeps `previous` where no search is due (`reusable_orders`).
    unique_id -> fitted model, and one summary row per series (`SUMMARY_SCHEMA`)."""
    windows = (
        rows.select("unique_id", "ds", "y")
        .join(series.select("unique_id"), on="unique_id", how="semi")
        .sort("unique_id", "ds")
        .group_by("unique_id", maintain_order=True)
        .tail(window)
    )
    lengths = series.join(windows.group_by("unique_id").len(), on="unique_id", how="left").with_columns(
        pl.col("len").fill_null(0)
    )
    choices = {
        (name, n): fitting_model(name, n, season) for name, n in lengths.select("candidate", "len").unique().iter_rows()
    }
    chosen = lengths.with_columns(
        model=pl.Series(
            [choices[(c, n)] for c, n in zip(lengths["candidate"], lengths["len"], strict=True)], dtype=pl.String
        )
    )
    orders = [
        reusable_orders(uid, prev, as_of, every_weeks) if model == "AutoARIMA" and prev and as_of is not None else ""
        for uid, model, prev in chosen.select("unique_id", "model", "previous").iter_rows()
    ]
    chosen = chosen.with_columns(orders=pl.Series(orders, dtype=pl.String))
    todo = windows.join(
        chosen.filter(pl.col("model").is_not_null()).select("unique_id", "model", "candidate", "orders"), on="unique_id"
    )
    models: dict[str, object] = {}
    if not todo.is_empty():
        frame = todo.to_pandas()
        frame["ds"] = pd.to_datetime(frame["ds"])
        models = dict(fit_frame(frame, freq, season, settings, None if as_of is None else as_of.isoformat()))
    fitted = [models.get(uid) for uid in chosen["unique_id"]]
    summary = chosen.select("unique_id", "candidate", "model").with_columns(
        fitted_as=pl.Series([None if m is None else getattr(m, "alias", None) for m in fitted], dtype=pl.String),
        kept=pl.Series([type(m).__name__ == "ARIMA" for m in fitted], dtype=pl.Boolean),
        orders=pl.Series([None if m is None else arima_orders(m) for m in fitted], dtype=pl.String),
        fit_cpu_s=pl.Series([getattr(m, "fit_cpu_s", None) for m in fitted], dtype=pl.Float64),
    )
    return models, summary.select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA)


def fit_frame(
    df: pd.DataFrame, freq: str, season: int, settings: ForecastSettings, as_of: str | None = None
) -> list[tuple[str, object]]:
    """Fit one model per series of a frame (unique_id, ds, y, model: the model to fit, candidate: the routed
    model it stands for; optional orders: `reusable_orders`, AutoARIMA's orders to keep): (unique_id, fitted
    model) pairs, each model's `candidate` attribute set. AutoARIMA's searched models are dated `as_of`
    (`orders_as_of`); a series with orders to keep has only its parameters estimated (searched when that fails).
    A series whose fit fails gets the seasonal naive, under the same alias. Each model carries what its fit cost,
    `fit_cpu_s` (CPU seconds of the fitting thread; a model group's fit shared evenly over its series)."""
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
                    rows.append((uid, model))
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
            rows.append((uid, model))
    return rows
