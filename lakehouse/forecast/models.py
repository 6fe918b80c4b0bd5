"""Candidate models, fitted at a cut-off, forecasting from their fitted state at any later origin.

Candidates (the seed's segmented architecture, plus one global model for every segment):

- AutoARIMA (statsforecast), the seed's SARIMA for stable series, on a bounded window;
- MSTL (statsforecast; seasonal decomposition with an AutoETS trend), the Prophet-class
  decomposition for seasonal series;
- LightGBM (mlforecast), one global model over every series: lags, rolling means and calendar
  of the target, promotions, events, covariates and the hierarchy's codes;
- FamilyMean+LightGBM for new products: the mean of established products of the same group in
  the same store, fading into LightGBM as the product's own history grows;
- SeasonalNaive, the baseline standing for the manual forecasters.

A weekly fit (`fit_models`) gives the state every forecast starts from; forecasts never refit
(`forecast_candidates`): each statistical model runs its filter over the series' latest window
with the fitted parameters (`model.forward`), LightGBM predicts recursively from the latest
lags (`MLForecast.predict(new_df=...)`). The same call serves the nightly operational horizon,
the planning horizon (recursive, up to years) and every origin of a backtest.
"""

from __future__ import annotations

import pickle
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from lakehouse.forecast.data import CaseData, Periods, history, series_id, to_pandas
from lakehouse.forecast.features import exogenous, first_sales, series_attributes, with_age
from lakehouse.forecast.segmentation import segment_series
from lakehouse.forecast.settings import LIGHTGBM, SEASONAL_NAIVE, SEED_MODELS, SEGMENTS, ForecastSettings

STAT_MODELS = ("AutoARIMA", "MSTL")
FAMILY = "FamilyMean+LightGBM"
MODELS = (*STAT_MODELS, LIGHTGBM, FAMILY)
CANDIDATES = {segment: tuple(dict.fromkeys((SEED_MODELS[segment], LIGHTGBM))) for segment in SEGMENTS}
ACTIVE_WITHIN = timedelta(days=28)  # a series is forecast when it had a sales row this recently


@dataclass
class FittedModels:
    """Everything a forecast starts from: the fit's cut-off, segments, routing and fitted state."""

    as_of: date
    periods: Periods
    segments: pl.DataFrame  # unique_id, store_id, sku_id, segment (and the statistics behind it)
    routing: dict[str, str]  # segment -> the model that forecasts it
    stat: dict[str, dict[str, object]]  # store_id -> unique_id -> fitted statistical model
    lightgbm: object  # a fitted MLForecast
    codes: dict[str, dict[str, int]]  # static attribute -> value -> code
    dynamic: list[str]  # dynamic feature columns LightGBM was trained with
    train_rows: int = 0
    selection: pl.DataFrame | None = None  # the validation scores behind the routing
    config: dict | None = None  # the settings it was fitted with (`configuration`), to refit it elsewhere
    stat_fits: pl.DataFrame | None = None  # candidate, model, series: substitutes for series too short
    age_cap: int | None = None  # LightGBM's `age` feature stops here (None: a version fitted before the cap)
    # one row per series given a statistical candidate (`statistical.SUMMARY_SCHEMA`: the model chosen, its
    # AutoARIMA orders, its fit's CPU); None: a version fitted before the summary was kept
    stat_summary: pl.DataFrame | None = None

    # ----------------------------------------------------------------- storage (MLflow artifacts)

    def save(self, folder: Path) -> None:
        """One file per store for the statistical state (the nightly path reads only its stores)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stat").mkdir(exist_ok=True)
        for store, models in self.stat.items():
            (folder / "stat" / f"{store}.pkl").write_bytes(pickle.dumps(models))
        self.segments.write_parquet(folder / "segments.parquet")
        if self.selection is not None:
            self.selection.write_parquet(folder / "selection.parquet")
        if self.stat_summary is not None:
            self.stat_summary.write_parquet(folder / "stat_summary.parquet")
        core = {k: v for k, v in self.__dict__.items() if k not in ("stat", "segments", "selection", "stat_summary")}
        (folder / "core.pkl").write_bytes(pickle.dumps(core))

    @classmethod
    def load(cls, folder: Path, stores: list[str] | None = None) -> FittedModels:
        core = pickle.loads((folder / "core.pkl").read_bytes())
        names = stores if stores is not None else [p.stem for p in (folder / "stat").glob("*.pkl")]
        stat = {
            s: pickle.loads((folder / "stat" / f"{s}.pkl").read_bytes())
            for s in names
            if (folder / "stat" / f"{s}.pkl").exists()
        }
        selection = pl.read_parquet(folder / "selection.parquet") if (folder / "selection.parquet").exists() else None
        summary = folder / "stat_summary.parquet"
        return cls(
            stat=stat,
            segments=pl.read_parquet(folder / "segments.parquet"),
            selection=selection,
            stat_summary=pl.read_parquet(summary) if summary.exists() else None,
            **core,
        )

    @property
    def model_names(self) -> set[str]:
        return set(self.routing.values())


# --------------------------------------------------------------------------- fitting


def configuration(settings: ForecastSettings) -> dict:
    """What a fit's outcome depends on besides the data and the routing: the models' and the segmentation's
    settings (not where the fits run)."""
    return {
        "models": settings.models.model_dump(mode="json", exclude={"engine", "dask_scheduler"}),
        "segmentation": settings.segmentation.model_dump(mode="json"),
    }


def configured(settings: ForecastSettings, config: dict | None) -> ForecastSettings:
    """`settings` with a stored configuration's models and segmentation (None: `settings` as they are)."""
    if not config:
        return settings
    models = {**settings.models.model_dump(mode="json"), **config["models"]}
    return settings.with_(models=models, segmentation=config["segmentation"])


def fit_models(
    known: CaseData,
    settings: ForecastSettings,
    periods: Periods,
    routing: dict[str, str] | None = None,
    candidates: bool = False,
    log=lambda *_: None,
    segments: pl.DataFrame | None = None,
    only: pl.DataFrame | None = None,
    previous: FittedModels | None = None,
) -> FittedModels:
    """Fit on `known`, the data as known at the fit's date (`data.until(as_of)`, cut by the caller).
    `candidates=True` fits every candidate of every segment (backtests); otherwise only the models
    `routing` uses (default: the seed's). `segments`: `segment_series(known)` when the caller has it; `only`
    (store_id, sku_id): the statistical models of these series alone (a backtest's sample, the only series it
    forecasts). `previous`: the last fit, whose AutoARIMA orders this one keeps where no new search is due
    (`models.arima_search_every`). With `models.engine: dask` every fit runs on the cluster (`distributed.py`)."""
    from lakehouse.forecast.distributed import engine_client

    routing = dict(routing or SEED_MODELS)
    as_of = known.known_at()
    segments = segment_series(known, settings, periods) if segments is None else segments
    hist = history(known)
    fitted_ids = (
        segments
        if only is None
        else segments.join(only.select("store_id", "sku_id"), on=["store_id", "sku_id"], how="semi")
    )
    needed = {m for s in SEGMENTS for m in (CANDIDATES[s] if candidates else (routing[s],))}
    stat_ids = {
        name: fitted_ids.filter(
            pl.col("segment").is_in([s for s in SEGMENTS if name in (CANDIDATES[s] if candidates else (routing[s],))])
        )
        for name in STAT_MODELS
        if name in needed
    }
    with engine_client(settings) as client:
        stat, stat_fits, summary = _fit_stat(hist, stat_ids, settings, periods, client, as_of, previous)
        log(_stat_note(summary, stat_fits, as_of))
        attributes = series_attributes(known, settings)
        codes = static_codes(attributes, settings)
        age_cap = periods.cadence.periods(settings.segmentation.new_max_history)
        frame = training_frame(known, hist, attributes, codes, settings, periods, age_cap)
        lightgbm, dynamic = fit_lightgbm(frame, codes, settings, periods, client)
    log(f"fitted LightGBM on {frame.height:,} rows ({frame['unique_id'].n_unique():,} series) as of {as_of}")
    return FittedModels(
        as_of,
        periods,
        segments,
        routing,
        stat,
        lightgbm,
        codes,
        dynamic,
        frame.height,
        config=configuration(settings),
        stat_fits=stat_fits,
        age_cap=age_cap,
        stat_summary=summary,
    )


def _stat_note(summary: pl.DataFrame | None, stat_fits: pl.DataFrame, as_of: date) -> str:
    substituted = stat_fits.filter(pl.col("model") != pl.col("candidate"))["series"].sum()
    fitted = summary.filter(pl.col("fitted_as").is_not_null()) if summary is not None else pl.DataFrame()
    kept = int(fitted["kept"].sum()) if fitted.height else 0  # AutoARIMA's orders kept, parameters refitted
    cpu = float(fitted["fit_cpu_s"].sum()) if fitted.height else 0.0
    return (
        f"fitted {fitted.height} statistical models as of {as_of} in {cpu:,.0f} CPU-s"
        + (f" ({kept} AutoARIMA series kept their orders)" if kept else "")
        + (
            f" ({substituted} series too short for their model: a substitute or the global model)"
            if substituted
            else ""
        )
    )


def fit_stat_models(
    hist: pl.DataFrame,
    ids_by_model: dict[str, pl.DataFrame],
    settings: ForecastSettings,
    periods: Periods,
    client=None,
    as_of: date | None = None,
    previous: FittedModels | None = None,
) -> tuple[dict[str, dict[str, object]], pl.DataFrame]:
    """store_id -> unique_id -> fitted model, each on its series' bounded window; and per candidate, how many
    series got which model. A series too short for its candidate gets the first substitute whose history
    needs it meets (`statistical.SUBSTITUTES`); one too short for all of them is left to the global model.
    With `as_of` and `previous`, AutoARIMA keeps the previous orders of the series not due for a search
    (`statistical.reusable_orders`)."""
    stat, fits, _ = _fit_stat(hist, ids_by_model, settings, periods, client, as_of, previous)
    return stat, fits


def _fit_stat(
    hist: pl.DataFrame,
    ids_by_model: dict[str, pl.DataFrame],
    settings: ForecastSettings,
    periods: Periods,
    client=None,
    as_of: date | None = None,
    previous: FittedModels | None = None,
) -> tuple[dict[str, dict[str, object]], pl.DataFrame, pl.DataFrame | None]:
    """`fit_stat_models` and the fit's summary (`statistical.SUMMARY_SCHEMA`). The windows are built where the
    fits run (`statistical.fit_series`): this process hands over each series' recent raw rows, its candidate and
    its previous AutoARIMA orders, all vectorised. On Dask one task per (store, hash bucket), each store's models
    kept as the blobs the tasks returned (`statistical.StoreModels`)."""
    from lakehouse.forecast.statistical import StoreModels, fit_counts, fit_series, previous_orders, recent_rows

    series = [ids.select("unique_id", candidate=pl.lit(name)) for name, ids in ids_by_model.items()]
    series = pl.concat(series) if series else pl.DataFrame(schema={"unique_id": pl.String, "candidate": pl.String})
    if series.is_empty():
        return {}, fit_counts(None), None
    series = series.unique("unique_id", keep="last", maintain_order=True).with_columns(
        store_id=pl.col("unique_id").str.split_exact("/", 1).struct.field("field_0")
    )
    series = series.join(previous_orders(series, settings, as_of, previous), on="unique_id", how="left")
    window = settings.stat_window_periods
    rows = recent_rows(
        hist.select("unique_id", "ds", "y").join(series.select("unique_id"), on="unique_id", how="semi"),
        window,
        window * periods.cadence.days,
    )
    args = (window, periods.alias, periods.cadence.season, settings, as_of, settings.arima_search_weeks)
    out: dict[str, dict[str, object]] = {}
    if settings.models.engine != "dask":
        models, summary = fit_series(rows, series, *args)
        for uid, model in models.items():
            out.setdefault(uid.split("/", 1)[0], {})[uid] = model
        return out, fit_counts(summary), summary
    from lakehouse.forecast.distributed import dask_client, fit_statistical, worker_threads

    with nullcontext(client) if client is not None else dask_client(settings) as cluster:
        stores = series["store_id"].n_unique()
        buckets = max(1, -(-8 * worker_threads(cluster) // stores))  # per store
        series = series.with_columns(bucket=(pl.col("unique_id").hash(seed=0) % buckets).cast(pl.Int32))
        rows = rows.join(series.select("unique_id", "store_id", "bucket"), on="unique_id")
        parts = rows.partition_by("store_id", "bucket", as_dict=True, include_key=False)
        work = [
            (key[0], parts.get(key, rows.head(0).drop("store_id", "bucket")), part)
            for key, part in series.partition_by("store_id", "bucket", as_dict=True, include_key=False).items()
        ]
        fitted = fit_statistical(cluster, work, *args)
    blobs: dict[str, list[bytes]] = {}
    for store, blob, _ in fitted:
        blobs.setdefault(store, []).append(blob)
    summary = pl.concat([s for _, _, s in fitted]) if fitted else None
    stat = {store: StoreModels(parts) for store, parts in blobs.items()}
    return stat, fit_counts(summary), summary


def static_columns(settings: ForecastSettings) -> list[str]:
    """The categorical static features: the store, the hierarchy's levels, the store type and the attributes
    the settings name as categories."""
    h, extra = settings.hierarchy, settings.attributes
    categories = [c for table in (extra.stores, extra.products) for c, kind in table.items() if kind == "category"]
    return list(dict.fromkeys(["store_id", *h.store_levels, *h.product_levels, "store_type", *categories]))


def numeric_statics(settings: ForecastSettings) -> list[str]:
    """The numeric static features: perishable, unit price, and the attributes the settings name as numbers."""
    extra = settings.attributes
    numbers = [c for table in (extra.stores, extra.products) for c, kind in table.items() if kind == "number"]
    return list(dict.fromkeys(["perishable", "unit_price", *numbers]))


def static_codes(attributes: pl.DataFrame, settings: ForecastSettings) -> dict[str, dict[str, int]]:
    """Integer codes of the categorical attributes, from the values the data holds."""
    return {
        c: {v: i for i, v in enumerate(sorted(attributes[c].drop_nulls().cast(pl.String).unique().to_list()))}
        for c in static_columns(settings)
        if c in attributes.columns
    }


def statics(attributes: pl.DataFrame, codes: dict[str, dict[str, int]], settings: ForecastSettings) -> pl.DataFrame:
    """unique_id and the static features: codes (-1 for a value unknown at fit time) and the numbers."""
    columns = [
        pl.col(c).cast(pl.String).replace_strict(mapping, default=-1, return_dtype=pl.Int32).alias(f"{c}_code")
        for c, mapping in codes.items()
    ]
    columns += [pl.col(c).cast(pl.Float64) for c in numeric_statics(settings) if c in attributes.columns]
    return attributes.select("unique_id", *columns)


def static_names(codes: dict[str, dict[str, int]], attributes_columns, settings: ForecastSettings) -> list[str]:
    return [f"{c}_code" for c in codes] + [c for c in numeric_statics(settings) if c in attributes_columns]


def training_frame(
    known: CaseData,
    hist: pl.DataFrame,
    attributes: pl.DataFrame,
    codes: dict,
    settings: ForecastSettings,
    periods: Periods,
    age_cap: int | None,
) -> pl.DataFrame:
    """The global model's rows: target, statics, and dynamic features as known the day before each period."""
    if settings.models.global_history:
        hist = hist.filter(
            pl.col("ds") > known.last_day - timedelta(days=settings.days(settings.models.global_history))
        )
    ids = hist["unique_id"].unique().sort()
    if ids.len() > settings.models.global_max_series:
        ids = ids.sample(settings.models.global_max_series, seed=7)
        hist = hist.filter(pl.col("unique_id").is_in(ids.implode()))
    attrs = attributes.filter(pl.col("unique_id").is_in(ids.implode()))
    requests = hist.select("unique_id", "ds", "y", as_of=pl.lit(None, pl.Date))
    frame = exogenous(known, attrs, requests, settings, periods).join(
        statics(attrs, codes, settings), on="unique_id", how="left"
    )
    return with_age(frame, first_sales(hist), periods, age_cap).drop("as_of")


def _mlforecast(settings: ForecastSettings, periods: Periods):
    from lightgbm import LGBMRegressor
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean

    cadence = periods.cadence
    return MLForecast(
        models={LIGHTGBM: LGBMRegressor(**settings.models.lightgbm)},
        freq=periods.alias,
        lags=list(cadence.lags),
        lag_transforms={cadence.lags[0]: [RollingMean(window_size=w) for w in cadence.rolling_windows]},
        date_features=list(cadence.date_features),
    )


def fit_lightgbm(frame: pl.DataFrame, codes: dict, settings: ForecastSettings, periods: Periods, client=None):
    """The global model on the training frame, in this process or, given a Dask client, through mlforecast's
    distributed API (`distributed.fit_lightgbm`); the fitted `MLForecast` and its dynamic features."""
    from lakehouse.forecast.distributed import fit_lightgbm as fit_on_cluster

    static = static_names(codes, frame.columns, settings)
    # Sorted: the features' order must not depend on the order rows arrived in (column sampling picks by position).
    dynamic = sorted(c for c in frame.columns if c not in ("unique_id", "ds", "y", *static))
    keep = max(periods.cadence.lags) + max(periods.cadence.rolling_windows)
    rows = to_pandas(frame.select("unique_id", "ds", "y", *static, *dynamic))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # series too short for the lags are left out, as they should be
        if client is not None:
            return fit_on_cluster(client, rows, static, keep, settings, periods), dynamic
        model = _mlforecast(settings, periods)
        model.fit(rows, static_features=static, keep_last_n=keep)
    return model, dynamic


# --------------------------------------------------------------------------- forecasting


def active_series(data: CaseData, origin: date) -> pl.DataFrame:
    """store_id, sku_id of the series with a sales row in the 28 days up to the origin."""
    return (
        data.sales.filter(pl.col("date").is_between(origin - ACTIVE_WITHIN + timedelta(days=1), origin))
        .select("store_id", "sku_id")
        .unique()
    )


def lookback(models: FittedModels, settings: ForecastSettings) -> int:
    cadence = models.periods.cadence
    return max(settings.stat_window_periods, max(cadence.lags) + max(cadence.rolling_windows) + 1, cadence.season)


def forecast_candidates(
    models: FittedModels,
    data: CaseData,
    origins: date | list[date],
    horizon: int,
    settings: ForecastSettings,
    which: str = "routed",
    ids: pl.DataFrame | None = None,
    routings: dict[str, dict[str, str]] | None = None,
) -> pl.DataFrame:
    """Forecasts for periods 1..horizon after each origin, of every series active at it (or of `ids`),
    from the fitted state and what was known at the end of the origin. Origins are forecast together:
    one LightGBM pass over every (series, origin) pair.

    `which="routed"`: each series' routed model only (`model`, `yhat`). `which="all"`: besides, every
    candidate of its segment and the seasonal naive as columns (backtests), and one column per named
    entry of `routings` (segment -> model): the same fitted candidates routed another way."""
    periods = models.periods
    origins = [origins] if isinstance(origins, date) else list(origins)
    routes = {"yhat": models.routing, **(routings or {})}
    keys = _request_keys(models, data, origins, ids, routes)
    if keys.is_empty():
        return _empty(which, routings)
    hist = history(data.for_series(keys))
    recent = _recent(keys, hist, lookback(models, settings) * periods.cadence.days)
    wanted = {m: set() for m in MODELS}
    for row in keys.select("key", "segment", *[f"route_{n}" for n in routes]).iter_rows(named=True):
        names = {row[f"route_{n}"] for n in routes} | (set(CANDIDATES[row["segment"]]) if which == "all" else set())
        for name in names:
            wanted[name].add(row["key"])
    stat = _stat_forecasts(models, recent, {n: wanted[n] for n in STAT_MODELS}, horizon)
    # A series routed to a statistical model without fitted state (too short, or new since the fit)
    # takes the new-product path.
    got = set(stat.select("key", "model").unique().iter_rows())
    fallback = {
        name: {
            key
            for key, model in keys.select("key", f"route_{name}").iter_rows()
            if model in STAT_MODELS and (key, model) not in got
        }
        for name in routes
    }
    wanted[FAMILY] |= set().union(*fallback.values())
    lgbm = _lightgbm_forecasts(
        models,
        data,
        keys.filter(pl.col("key").is_in(list(wanted[LIGHTGBM] | wanted[FAMILY]))),
        recent,
        hist,
        horizon,
        settings,
    )
    family = _family_forecasts(
        models,
        data.products,
        keys.filter(pl.col("key").is_in(list(wanted[FAMILY]))),
        recent,
        hist,
        lgbm,
        horizon,
        settings,
    )
    long = pl.concat(
        [
            stat.drop("fitted_as"),
            lgbm.filter(pl.col("key").is_in(list(wanted[LIGHTGBM]))).with_columns(model=pl.lit(LIGHTGBM)),
            family,
        ],
        how="vertical_relaxed",
    )
    steps = pl.DataFrame({"step": list(range(1, horizon + 1))}, schema={"step": pl.Int32})
    grid = keys.join(steps, how="cross").with_columns(
        ds=pl.col("origin") + pl.duration(days=pl.col("step") * periods.cadence.days)
    )
    wide = grid.join(long.pivot(on="model", index=["key", "step"], values="yhat"), on=["key", "step"], how="left")
    wide = wide.with_columns([pl.lit(None, pl.Float64).alias(n) for n in MODELS if n not in wide.columns])
    for name in routes:
        route = (
            pl.when(pl.col("key").is_in(list(fallback[name]))).then(pl.lit(FAMILY)).otherwise(pl.col(f"route_{name}"))
        )
        wide = wide.with_columns(route.alias(f"route_{name}")).with_columns(
            pl.coalesce(*[pl.when(pl.col(f"route_{name}") == m).then(pl.col(m)) for m in MODELS]).alias(name)
        )
    # The routed model's name says which substitute forecast a series too short for its statistical model.
    substitutes = stat.filter(pl.col("model") != pl.col("fitted_as")).select("key", "model", "fitted_as").unique()
    wide = (
        wide.rename({"route_yhat": "model"})
        .join(substitutes, on=["key", "model"], how="left")
        .with_columns(model=pl.coalesce("fitted_as", "model"))
    )
    naive = seasonal_naive(recent, horizon, periods)
    wide = _with_fallbacks(wide.join(naive, on=["key", "step"], how="left"), recent, data.products, routes, settings)
    wide = wide.with_columns([pl.col(m).clip(0.0) for m in (*MODELS, *routes)])
    return wide.select(*_columns(which, routings)).sort("unique_id", "origin", "step")


FALLBACKS = ("FamilyMean (fallback)", "SeasonalNaive (fallback)", "zero (fallback)")


def _with_fallbacks(
    wide: pl.DataFrame,
    recent: pl.DataFrame,
    products: pl.DataFrame,
    routes: dict[str, dict[str, str]],
    settings: ForecastSettings,
) -> pl.DataFrame:
    """Every series asked for gets a forecast: where its routed model gave none (too short for the lags, no
    fitted state), the mean of its product group in its store over `family_mean_window` at the origin, else
    the seasonal naive, else 0; `model` names the fallback."""
    group = settings.hierarchy.product_levels[-1] if settings.hierarchy.product_levels else None
    groups = products.select("sku_id", *([group] if group else []))
    by = ["origin", "store_id", *([group] if group else [])]
    span = settings.days(settings.models.family_mean_window)
    info = wide.select("key", "store_id", "sku_id", "origin").unique().join(groups, on="sku_id", how="left")
    means = (
        recent.filter(pl.col("ds") > pl.col("origin") - pl.duration(days=span))
        .join(info.drop("origin"), on="key")
        .group_by(by)
        .agg(family_mean=pl.col("y").mean())
    )
    wide = wide.join(info.join(means, on=by, how="left").select("key", "family_mean"), on="key", how="left")
    family, naive = pl.col("family_mean"), pl.col(SEASONAL_NAIVE)
    label = (
        pl.when(pl.col("yhat").is_not_null())
        .then(pl.col("model"))
        .when(family.is_not_null())
        .then(pl.lit(FALLBACKS[0]))
        .when(naive.is_not_null())
        .then(pl.lit(FALLBACKS[1]))
        .otherwise(pl.lit(FALLBACKS[2]))
    )
    return wide.with_columns(label.alias("model")).with_columns(
        [pl.coalesce(name, family, naive, pl.lit(0.0)).alias(name) for name in routes]
    )


def _recent(keys: pl.DataFrame, hist: pl.DataFrame, days: int) -> pl.DataFrame:
    """key, unique_id, origin, ds, y: each requested series' history over the `days` up to its origin."""
    return (
        keys.select("key", "unique_id", "origin")
        .join(hist.select("unique_id", "ds", "y"), on="unique_id")
        .filter((pl.col("ds") <= pl.col("origin")) & (pl.col("ds") > pl.col("origin") - pl.duration(days=days)))
        .sort("key", "ds")
    )


def _request_keys(
    models: FittedModels,
    data: CaseData,
    origins: list[date],
    ids: pl.DataFrame | None,
    routes: dict[str, dict[str, str]],
) -> pl.DataFrame:
    """One row per (series, origin) asked for: its key, segment at the fit (new when unknown then) and the
    model each routing gives it (`route_<name>`)."""
    keys = pl.concat(
        [
            (active_series(data, o) if ids is None else ids.select("store_id", "sku_id")).with_columns(origin=pl.lit(o))
            for o in origins
        ]
    )
    if ids is not None:  # a series is forecast from its first row on, as the nightly path would
        first = data.sales.group_by("store_id", "sku_id").agg(first_row=pl.col("date").min())
        keys = keys.join(first, on=["store_id", "sku_id"]).filter(pl.col("first_row") <= pl.col("origin"))
        keys = keys.drop("first_row")
    if keys.is_empty():
        return keys
    keys = keys.with_columns(
        series_id(),
        key=pl.concat_str(
            [pl.col("store_id"), pl.lit("/"), pl.col("sku_id"), pl.lit("@"), pl.col("origin").cast(pl.String)]
        ),
    )
    keys = keys.join(models.segments.select("unique_id", "segment"), on="unique_id", how="left").with_columns(
        pl.col("segment").fill_null("new")
    )
    return keys.with_columns(
        [pl.col("segment").replace_strict(r, return_dtype=pl.String).alias(f"route_{n}") for n, r in routes.items()]
    )


def _columns(which: str, routings: dict | None = None) -> list[str]:
    base = ["unique_id", "store_id", "sku_id", "segment", "origin", "ds", "step", "model", "yhat"]
    return base + [*MODELS, SEASONAL_NAIVE, *(routings or {})] if which == "all" else base


def _empty(which: str, routings: dict | None = None) -> pl.DataFrame:
    types = {
        "unique_id": pl.String,
        "store_id": pl.String,
        "sku_id": pl.String,
        "segment": pl.String,
        "origin": pl.Date,
        "ds": pl.Date,
        "step": pl.Int32,
        "model": pl.String,
    }
    return pl.DataFrame(schema={c: types.get(c, pl.Float64) for c in _columns(which, routings)})


def _stat_forecasts(
    models: FittedModels, recent: pl.DataFrame, wanted: dict[str, set[str]], horizon: int
) -> pl.DataFrame:
    """Each fitted statistical model filters the series' latest window at each origin: no refit. `model` is the
    candidate a forecast stands for, `fitted_as` the model that made it (a substitute for a short series)."""
    schema = {"key": pl.String, "step": pl.Int32, "yhat": pl.Float64, "model": pl.String, "fitted_as": pl.String}
    todo = {key: name for name, keys in wanted.items() for key in keys}
    if not todo:
        return pl.DataFrame(schema=schema)
    rows_key, rows_model, rows_fitted, values = [], [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for (key,), part in recent.filter(pl.col("key").is_in(list(todo))).group_by(["key"], maintain_order=True):
            uid = part["unique_id"][0]
            model = models.stat.get(uid.split("/", 1)[0], {}).get(uid)
            # A fit that failed for a series left the seasonal naive in its place, under the same alias.
            if model is None or getattr(model, "candidate", getattr(model, "alias", None)) != todo[key]:
                continue
            values.append(
                np.asarray(model.forward(y=part["y"].to_numpy().astype(np.float64), h=horizon)["mean"], dtype=float)
            )
            rows_key.append(key)
            rows_model.append(todo[key])
            rows_fitted.append(getattr(model, "alias", todo[key]))
    if not values:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(
        {
            "key": np.repeat(rows_key, horizon),
            "step": np.tile(np.arange(1, horizon + 1), len(rows_key)),
            "yhat": np.concatenate(values),
            "model": np.repeat(rows_model, horizon),
            "fitted_as": np.repeat(rows_fitted, horizon),
        },
        schema=schema,
    )


def _lightgbm_forecasts(
    models: FittedModels,
    data: CaseData,
    keys: pl.DataFrame,
    recent: pl.DataFrame,
    hist: pl.DataFrame,
    horizon: int,
    settings: ForecastSettings,
) -> pl.DataFrame:
    """LightGBM from the latest lags at each origin, recursively over the horizon; the future's features
    as known at the origin (history rows need no features: only their target makes the lags)."""
    empty = pl.DataFrame(schema={"key": pl.String, "step": pl.Int32, "yhat": pl.Float64})
    periods = models.periods
    mine = recent.join(keys.select("key"), on="key")
    enough = (
        mine.group_by("key").len().filter(pl.col("len") >= min(periods.cadence.lags)).select("key")
    )  # longer lags of a young series are unknown (NaN)
    keys, mine = keys.join(enough, on="key"), mine.join(enough, on="key")
    if keys.is_empty():
        return empty
    attributes = series_attributes(data, settings, keys.select("store_id", "sku_id").unique())
    static = statics(attributes, models.codes, settings)
    static_cols = [c for c in static.columns if c != "unique_id"]
    future = (
        keys.select("key", "unique_id", "origin")
        .join(pl.DataFrame({"step": list(range(1, horizon + 1))}, schema={"step": pl.Int32}), how="cross")
        .with_columns(
            ds=pl.col("origin") + pl.duration(days=pl.col("step") * periods.cadence.days), as_of=pl.col("origin")
        )
    )
    future = with_age(
        exogenous(data, attributes, future, settings, periods), first_sales(hist), periods, models.age_cap
    )
    for column in models.dynamic:  # a feature absent tonight (no promotion anywhere, say) is unknown
        if column not in future.columns:
            future = future.with_columns(pl.lit(None, pl.Float64).alias(column))
    new_df = mine.select(pl.col("key").alias("unique_id"), "ds", "y", pl.col("unique_id").alias("series")).join(
        static.rename({"unique_id": "series"}), on="series", how="left"
    )
    new_df = new_df.with_columns([pl.lit(None, pl.Float64).alias(c) for c in models.dynamic]).select(
        "unique_id", "ds", "y", *static_cols, *models.dynamic
    )
    x_df = future.select(pl.col("key").alias("unique_id"), "ds", *models.dynamic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = models.lightgbm.predict(horizon, new_df=to_pandas(new_df), X_df=to_pandas(x_df))
    pred = pl.from_pandas(pred).select(
        pl.col("unique_id").alias("key"), pl.col("ds").cast(pl.Date), pl.col(LIGHTGBM).cast(pl.Float64).alias("yhat")
    )
    return pred.join(future.select("key", "ds", "step"), on=["key", "ds"]).select("key", "step", "yhat")


def _family_forecasts(
    models: FittedModels,
    products: pl.DataFrame,
    keys: pl.DataFrame,
    recent: pl.DataFrame,
    hist: pl.DataFrame,
    lgbm: pl.DataFrame,
    horizon: int,
    settings: ForecastSettings,
) -> pl.DataFrame:
    """New products: the mean of established series of the same reference group in the same store at the
    origin, weighing 1 at the first sale and fading to 0 after `family_fade`, blended with LightGBM
    (the group mean alone while LightGBM has too little history; the product's own recent mean when
    the group has no established product either). A product with no sale yet at the origin gets no
    group prior: LightGBM, else its own recent mean."""
    schema = {"key": pl.String, "step": pl.Int32, "yhat": pl.Float64, "model": pl.String}
    if keys.is_empty():
        return pl.DataFrame(schema=schema)
    cadence = models.periods.cadence
    group = settings.hierarchy.product_levels[-1] if settings.hierarchy.product_levels else None
    groups = products.select("sku_id", *([group] if group else []))
    span = settings.days(settings.models.family_mean_window)
    established = models.segments.filter(pl.col("segment") != "new").select("unique_id", "store_id", "sku_id")
    window = (
        recent.filter(pl.col("ds") > pl.col("origin") - pl.duration(days=span))
        .join(established, on="unique_id")
        .join(groups, on="sku_id", how="left")
    )
    by = ["origin", "store_id"] + ([group] if group else [])
    means = window.group_by(by).agg(group_mean=pl.col("y").mean())
    own_mean = (
        recent.filter(pl.col("ds") > pl.col("origin") - pl.duration(days=span))
        .group_by("key")
        .agg(own_mean=pl.col("y").mean())
    )
    fade = max(settings.days(settings.models.family_fade) // cadence.days, 1)
    # The first sale as known at each origin: a product listed (rows of 0) but not selling yet gets no group
    # prior, whatever it sold later.
    first = (
        keys.select("key", "unique_id", "origin")
        .join(hist.filter(pl.col("y") > 0).select("unique_id", "ds"), on="unique_id")
        .filter(pl.col("ds") <= pl.col("origin"))
        .group_by("key")
        .agg(first_sale=pl.col("ds").min())
    )
    target = (
        keys.select("key", "unique_id", "store_id", "sku_id", "origin")
        .join(groups, on="sku_id", how="left")
        .join(means, on=by, how="left")
    )
    target = target.join(own_mean, on="key", how="left").join(first, on="key", how="left")
    target = target.with_columns(own=(pl.col("origin") - pl.col("first_sale")).dt.total_days() // cadence.days)
    frame = target.join(
        pl.DataFrame({"step": list(range(1, horizon + 1))}, schema={"step": pl.Int32}), how="cross"
    ).join(lgbm, on=["key", "step"], how="left")
    weight = pl.when(pl.col("first_sale").is_null()).then(0.0).otherwise((1 - pl.col("own") / fade).clip(0.0, 1.0))
    yhat = (
        pl.when(pl.col("group_mean").is_null() | (weight == 0))
        .then(pl.col("yhat"))
        .when(pl.col("yhat").is_null())
        .then(pl.col("group_mean"))
        .otherwise(weight * pl.col("group_mean") + (1 - weight) * pl.col("yhat"))
    )
    return frame.select("key", "step", pl.coalesce(yhat, "own_mean", pl.lit(0.0)).alias("yhat"), model=pl.lit(FAMILY))


def seasonal_naive(recent: pl.DataFrame, horizon: int, periods: Periods) -> pl.DataFrame:
    """key, step and the value one season before each forecast period (same weekday last week; same
    week last year)."""
    season = periods.cadence.season
    steps = pl.DataFrame({"step": list(range(1, horizon + 1))}, schema={"step": pl.Int32})
    source = (
        recent.select("key", "origin")
        .unique()
        .join(steps, how="cross")
        .with_columns(
            ds=pl.col("origin") + pl.duration(days=((pl.col("step") - 1) % season + 1 - season) * periods.cadence.days)
        )
    )
    return source.join(
        recent.select("key", "ds", pl.col("y").alias(SEASONAL_NAIVE)), on=["key", "ds"], how="left"
    ).select("key", "step", SEASONAL_NAIVE)
