"""Models per segment, fitted weekly, forecasting nightly from their fitted state.

- stable:   statsforecast AutoARIMA (SARIMA) on a bounded window (the last 16 weeks);
- seasonal: statsforecast MSTL (weekly season, AutoETS trend): the decomposition model, 8x
            faster to fit than AutoETS here (docs/forecast.md);
- new:      mean of the same family in the same store, blended with a global LightGBM on
            product attributes (mlforecast); the family mean fades out over the first 8 weeks;
- promo:    global LightGBM (mlforecast) with calendar, promotion and weather features.

Nightly, the statistical models are not refitted: each fitted model runs its filter over the
series' latest window with the weekly parameters (`model.forward`), and the global models
predict from the latest lags (`MLForecast.predict(new_df=...)`). The weekly fit of the
statistical models can run on Dask through fugue (`engine="dask"`).
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
import polars as pl

from lakehouse.forecast.config import ForecastSettings, Frequency
from lakehouse.forecast.features import STATIC_COLUMNS, StoreData, exogenous, future_periods, history, static_features, to_pandas

STAT_SEGMENTS = ("stable", "seasonal")
GLOBAL_SEGMENTS = ("promo", "new")
FORECAST_COLUMNS = {"store_id": pl.String, "sku_id": pl.String, "segment": pl.String, "model": pl.String, "origin": pl.Date, "ds": pl.Date, "step": pl.Int32, "yhat": pl.Float64}


def stat_model(segment: str, season: int, settings: ForecastSettings):
    from statsforecast.models import MSTL, AutoARIMA, AutoETS

    if segment == "stable":
        return AutoARIMA(season_length=season, **settings.arima)
    return MSTL(season_length=[season], trend_forecaster=AutoETS(model="ZZN"))


STAT_MODEL_NAMES = {"stable": "AutoARIMA", "seasonal": "MSTL"}
GLOBAL_MODEL_NAMES = {"promo": "LightGBM", "new": "FamilyMean+LightGBM"}


# --------------------------------------------------------------------------- statistical models


def _fit_partition(df: pd.DataFrame, freq_alias: str, season: int, settings: ForecastSettings) -> pd.DataFrame:
    """Fit one model per series of a frame holding one segment's series; pickled fitted models out."""
    from statsforecast import StatsForecast

    rows = []
    for segment, part in df.groupby("segment"):
        sf = StatsForecast(models=[stat_model(segment, season, settings)], freq=freq_alias, n_jobs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sf.fit(part[["unique_id", "ds", "y"]])
        rows += [(uid, segment, pickle.dumps(model)) for uid, model in zip(sf.uids, sf.fitted_[:, 0])]
    return pd.DataFrame(rows, columns=["unique_id", "segment", "model"])


def fit_stat_models(windows: pd.DataFrame, freq: Frequency, settings: ForecastSettings) -> dict[str, object]:
    """unique_id -> fitted model, for the stable and seasonal series in `windows` (unique_id, ds, y, segment)."""
    if windows.empty:
        return {}
    if settings.engine == "dask":
        import fugue.api as fa
        from dask.distributed import Client

        with Client(settings.dask_scheduler) if settings.dask_scheduler else Client(processes=False, n_workers=1, threads_per_worker=2) as client:
            fitted = fa.transform(
                windows,
                _fit_partition,
                schema="unique_id:str,segment:str,model:bytes",
                params={"freq_alias": freq.alias, "season": freq.season, "settings": settings},
                partition={"by": "segment", "num": max(2, sum(w["nthreads"] for w in client.scheduler_info()["workers"].values()))},
                engine=client,
                as_local=True,
            )
        fitted = fitted if isinstance(fitted, pd.DataFrame) else fitted.as_pandas()
    else:
        from statsforecast import StatsForecast

        rows = []
        for segment, part in windows.groupby("segment"):
            sf = StatsForecast(models=[stat_model(segment, freq.season, settings)], freq=freq.alias, n_jobs=settings.stat_n_jobs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sf.fit(part[["unique_id", "ds", "y"]])
            rows += [(uid, model) for uid, model in zip(sf.uids, sf.fitted_[:, 0])]
        return dict(rows)
    return {uid: pickle.loads(blob) for uid, blob in zip(fitted["unique_id"], fitted["model"])}


def stat_windows(hist: pl.DataFrame, segments: pl.DataFrame, freq: Frequency) -> pd.DataFrame:
    """The bounded fitting window of every stable and seasonal series."""
    keep = segments.filter(pl.col("segment").is_in(STAT_SEGMENTS)).select("sku_id", "segment")
    windows = hist.join(keep, on="sku_id").sort("unique_id", "ds").group_by("unique_id", maintain_order=True).tail(freq.stat_window)
    return to_pandas(windows.select("unique_id", "ds", "y", "segment"))


def forward_stat_models(fitted: dict[str, object], recent: pl.DataFrame, freq: Frequency) -> dict[str, np.ndarray]:
    """Forecasts from fitted state: each model filters its series' latest window, no refit."""
    out = {}
    for (uid,), part in recent.sort("ds").group_by(["unique_id"], maintain_order=True):
        model = fitted.get(uid)
        if model is None:
            continue
        y = part["y"].to_numpy().astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[uid] = np.asarray(model.forward(y=y, h=freq.horizon)["mean"], dtype=float)
    return out


# --------------------------------------------------------------------------- global models


@dataclass
class GlobalModels:
    """The two mlforecast LightGBM models and what they were trained with."""

    promo: object
    new: object
    dynamic_columns: list[str]
    as_of: date
    train_rows: dict = field(default_factory=dict)


def _mlforecast(freq: Frequency, settings: ForecastSettings, lags: tuple[int, ...]):
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean

    date_features = ["dayofweek", "month", "dayofyear"] if freq.days == 1 else ["month", "week"]
    return MLForecast(
        models={"lgbm": LGBMRegressor(**settings.lgbm_params)},
        freq=freq.alias,
        lags=list(lags),
        lag_transforms={1: [RollingMean(window_size=w) for w in freq.rolling]},
        date_features=date_features,
        num_threads=1,
    )


def training_frame(data: StoreData, as_of: date, freq: Frequency, settings: ForecastSettings, segments: pl.DataFrame) -> pl.DataFrame:
    """One store's rows for the global models: target, point-in-time features, statics, segment."""
    hist = history(data.until(as_of), freq)
    lookback = freq.global_window + max(freq.rolling) + max(freq.lags)
    first = as_of - timedelta(days=lookback * freq.days)
    hist = hist.filter(pl.col("ds") > first)
    if hist.is_empty():
        return hist
    dates = [first + timedelta(days=k) for k in range(1, (as_of - first).days + 1)]
    exog = exogenous(data, dates, None, freq)
    return (
        hist.join(exog, on=["unique_id", "ds"], how="left")
        .join(static_features(data), on="unique_id", how="left")
        .join(segments.select("sku_id", "segment"), on="sku_id", how="left")
    )


def fit_global_models(frames: list[pl.DataFrame], as_of: date, freq: Frequency, settings: ForecastSettings) -> GlobalModels:
    train = pl.concat(frames, how="diagonal_relaxed")
    ids = train["unique_id"].unique().sort()
    if ids.len() > settings.global_max_series:
        ids = ids.sample(settings.global_max_series, seed=7)
        train = train.filter(pl.col("unique_id").is_in(ids.implode()))
    dynamic = [c for c in train.columns if c not in ("unique_id", "sku_id", "ds", "y", "segment", *STATIC_COLUMNS)]
    columns = ["unique_id", "ds", "y", *STATIC_COLUMNS, *dynamic]
    promo_rows = train.filter(pl.col("segment") == "promo")
    if promo_rows["unique_id"].n_unique() < 2:  # too few promo series: learn promotions from every series
        promo_rows = train
    promo = _mlforecast(freq, settings, freq.lags).fit(to_pandas(promo_rows.select(columns)), static_features=list(STATIC_COLUMNS))
    new = _mlforecast(freq, settings, freq.lags[:2]).fit(to_pandas(train.select(columns)), static_features=list(STATIC_COLUMNS))
    return GlobalModels(promo, new, dynamic, as_of, {"promo": promo_rows.height, "new": train.height})


def predict_global(model, recent: pl.DataFrame, future: pl.DataFrame, statics: pl.DataFrame, dynamic: list[str], freq: Frequency) -> pd.DataFrame:
    """Forecast from the latest lags with the weekly model (no refit)."""
    if recent.is_empty():
        return pd.DataFrame(columns=["unique_id", "ds", "lgbm"])
    new_df = recent.join(statics, on="unique_id", how="left").select("unique_id", "ds", "y", *STATIC_COLUMNS, *dynamic)
    x_df = future.filter(pl.col("unique_id").is_in(recent["unique_id"].unique().implode())).select("unique_id", "ds", *dynamic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # temperatures beyond the 7-day weather forecast are unknown (null)
        return model.predict(freq.horizon, new_df=to_pandas(new_df), X_df=to_pandas(x_df))


# --------------------------------------------------------------------------- one store, one night


def family_means(hist: pl.DataFrame, segments: pl.DataFrame, products: pl.DataFrame, origin: date, freq: Frequency, days: int) -> pl.DataFrame:
    """Mean units per period of established products in each family of the store (last `days`)."""
    recent = hist.filter(pl.col("ds") > origin - timedelta(days=days)).join(segments.select("sku_id", "segment"), on="sku_id")
    established = recent.filter(pl.col("segment") != "new").join(products.select("sku_id", "family"), on="sku_id")
    return established.group_by("family").agg(family_mean=pl.col("y").mean())


def forecast_store(
    data: StoreData,
    segments: pl.DataFrame,
    stat_fitted: dict[str, object],
    global_models: GlobalModels,
    origin: date,
    freq: Frequency,
    settings: ForecastSettings,
) -> pl.DataFrame:
    """D+1..D+h for every series of the store known at `origin`, each by its segment's model."""
    known = data.until(origin)
    hist = history(known, freq)
    active = hist.group_by("sku_id").agg(last=pl.col("ds").max()).filter(pl.col("last") > origin - timedelta(days=28 * freq.days))
    hist = hist.join(active.select("sku_id"), on="sku_id")
    seg = segments.select("sku_id", "segment").join(active.select("sku_id"), on="sku_id", how="right").with_columns(pl.col("segment").fill_null("new"))
    periods = future_periods(origin, freq)
    lookback = max(freq.stat_window, max(freq.rolling) + max(freq.lags) + 1)
    recent = hist.filter(pl.col("ds") > origin - timedelta(days=lookback * freq.days))
    rows: list[pl.DataFrame] = []

    def emit(frame: pl.DataFrame, model: str):
        rows.append(frame.with_columns(model=pl.lit(model)))

    # Statistical segments, from fitted state.
    stat_ids = seg.filter(pl.col("segment").is_in(STAT_SEGMENTS))
    stat_recent = recent.join(stat_ids, on="sku_id").group_by("unique_id", maintain_order=True).tail(freq.stat_window)
    forecasts = forward_stat_models(stat_fitted, stat_recent, freq)
    missing = [u for u in stat_recent["unique_id"].unique().to_list() if u not in forecasts]
    if forecasts:
        uids = list(forecasts)
        emit(
            pl.DataFrame({"unique_id": np.repeat(uids, freq.horizon), "ds": periods * len(uids), "step": list(range(1, freq.horizon + 1)) * len(uids), "yhat": np.concatenate([forecasts[u] for u in uids])}),
            "stat",
        )

    # Global models; series without fitted statistical state (fitted before they existed) fall back to the new-product path.
    statics = static_features(known)
    exog_dates = [periods[0] - timedelta(days=lookback * freq.days) + timedelta(days=k) for k in range(lookback * freq.days + freq.horizon * freq.days)]
    exog_dates = [d for d in exog_dates if d <= periods[-1] + timedelta(days=freq.days - 1)]
    past = exogenous(known, [d for d in exog_dates if d <= origin], None, freq)
    future = exogenous(known, [d for d in exog_dates if d > origin], origin, freq)
    dynamic = [c for c in global_models.dynamic_columns if c in future.columns]
    recent_exog = recent.join(past, on=["unique_id", "ds"], how="left")
    promo_ids = seg.filter(pl.col("segment") == "promo")["sku_id"]
    new_ids = pl.concat([seg.filter(pl.col("segment") == "new")["sku_id"], pl.Series([u.split("/", 1)[1] for u in missing], dtype=pl.String)])
    for segment, ids, model in (("promo", promo_ids, global_models.promo), ("new", new_ids, global_models.new)):
        part = recent_exog.filter(pl.col("sku_id").is_in(ids.implode()))
        lags_needed = max(model.ts.lags) + 1
        enough = part.group_by("unique_id").len().filter(pl.col("len") >= lags_needed)["unique_id"]
        pred = predict_global(model, part.filter(pl.col("unique_id").is_in(enough.implode())), future, statics, dynamic, freq)
        if len(pred):
            frame = pl.from_pandas(pred).with_columns(pl.col("ds").cast(pl.Date), step=pl.col("ds").rank("dense").over("unique_id").cast(pl.Int32)).rename({"lgbm": "yhat"})
            if segment == "new":
                frame = _blend_family(frame, hist, seg, known.products, origin, freq, settings)
            emit(frame.select("unique_id", "ds", "step", "yhat"), GLOBAL_MODEL_NAMES[segment])
        short = part.filter(~pl.col("unique_id").is_in(enough.implode()))["unique_id"].unique().to_list()
        if short:  # too young for the lags: the family mean alone
            frame = pl.DataFrame({"unique_id": np.repeat(short, freq.horizon), "ds": periods * len(short), "step": list(range(1, freq.horizon + 1)) * len(short), "yhat": 0.0})
            emit(_blend_family(frame, hist, seg, known.products, origin, freq, settings, family_weight=1.0).select("unique_id", "ds", "step", "yhat"), "FamilyMean")
    if not rows:
        return pl.DataFrame(schema=FORECAST_COLUMNS)
    out = pl.concat([r.with_columns(pl.col("ds").cast(pl.Date), pl.col("step").cast(pl.Int32), pl.col("yhat").cast(pl.Float64)) for r in rows])
    return (
        out.with_columns(
            store_id=pl.lit(data.store_id),
            sku_id=pl.col("unique_id").str.split_exact("/", 1).struct.field("field_1"),
            origin=pl.lit(origin),
            yhat=pl.col("yhat").clip(0.0).fill_nan(0.0),
        )
        .join(seg, on="sku_id", how="left")
        .with_columns(model=pl.when(pl.col("model") == "stat").then(pl.col("segment").replace_strict(STAT_MODEL_NAMES, default="stat")).otherwise(pl.col("model")))
        .select(list(FORECAST_COLUMNS))
        .sort("sku_id", "step")
    )


def _blend_family(frame: pl.DataFrame, hist, seg, products, origin, freq, settings, family_weight: float | None = None) -> pl.DataFrame:
    """Blend with the family mean; its weight fades with the product's own history (or is fixed)."""
    means = family_means(hist, seg, products, origin, freq, settings.family_mean_days)
    first_sale = hist.group_by("sku_id").agg(first=pl.col("ds").min())
    own_days = (pl.lit(origin) - pl.col("first")).dt.total_days().fill_null(0)
    weight = pl.lit(family_weight) if family_weight is not None else (1 - own_days / settings.new_family_fade_days).clip(0.0, 1.0)
    return (
        frame.with_columns(sku_id=pl.col("unique_id").str.split_exact("/", 1).struct.field("field_1"))
        .join(products.select("sku_id", "family"), on="sku_id", how="left")
        .join(means, on="family", how="left")
        .join(first_sale, on="sku_id", how="left")
        .with_columns(weight=weight)
        .with_columns(yhat=pl.when(pl.col("family_mean").is_null()).then(pl.col("yhat")).otherwise(pl.col("weight") * pl.col("family_mean") + (1 - pl.col("weight")) * pl.col("yhat")))
    )
