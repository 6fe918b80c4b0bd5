"""What users' files broke (issue 22): periods missing inside a series, series too short for their statistical
model or for the lags, products listed before they sell, returns in the actuals, the reconciliation method,
static attributes. Each is handled by a documented rule and counted."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from lakehouse.common.schema import InputDataError
from lakehouse.forecast import pipeline
from lakehouse.forecast import world as gen
from lakehouse.forecast.data import CaseData, Periods, periods_of
from lakehouse.forecast.evaluation import accuracy, select_routing
from lakehouse.forecast.models import FALLBACKS, FAMILY, fit_models, fit_stat_models, forecast_candidates
from lakehouse.forecast.reconcile import (
    BOTTOM_UP,
    METHODS,
    MIN_TRACE,
    TOP_DOWN,
    aggregate_base_forecasts,
    aggregate_history,
    best_method,
    coherence,
    reconcile,
)
from lakehouse.forecast.settings import LIGHTGBM, SEGMENTS, ForecastSettings
from lakehouse.forecast.statistical import SUBSTITUTES, fitting_model

SMALL = {
    "objective": "tweedie",
    "n_estimators": 30,
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_child_samples": 10,
    "n_jobs": 1,
    "verbosity": -1,
}
SETTINGS = ForecastSettings(models={"lightgbm": SMALL})
WORLD = gen.WorldConfig(stores=2, skus=6, seed=5, years=1.0)


@pytest.fixture(scope="module")
def data() -> CaseData:
    tables = gen.master_tables(WORLD)
    sales = pl.concat([gen.store_sales(WORLD, tables, s) for s in tables["stores"]["store_id"]])
    return CaseData(
        tables["stores"], tables["products"], sales, tables["promotions"], tables["events"], tables["covariates"]
    )


# --------------------------------------------------------------------------- missing periods


def _gappy(weekly: bool = False) -> pl.DataFrame:
    step = 7 if weekly else 1
    days = [date(2025, 1, 5) + timedelta(days=step * k) for k in range(10)]
    kept = [d for k, d in enumerate(days) if k not in (3, 4)]  # two periods missing inside the series
    return pl.DataFrame(
        {
            "store_id": ["a"] * (len(kept) + 10),
            "sku_id": ["x"] * len(kept) + ["y"] * 10,
            "date": kept + days,
            "units": [1.0] * (len(kept) + 10),
        }
    )


@pytest.mark.parametrize("weekly", [False, True])
def test_periods_missing_inside_a_series_are_refused_with_series_and_dates(weekly):
    settings = ForecastSettings(frequency="W" if weekly else "D")
    sales = _gappy(weekly)
    step = 7 if weekly else 1
    missing = [date(2025, 1, 5) + timedelta(days=step * k) for k in (3, 4)]
    with pytest.raises(InputDataError, match="2 period\\(s\\) missing inside 1 series") as refused:
        pipeline.fill_missing_periods(sales, "sales.csv", settings)
    message = str(refused.value)
    assert f"a/x: {missing[0]}, {missing[1]}" in message and "quirks.missing_periods" in message
    filled = pipeline.fill_missing_periods(
        sales, "sales.csv", ForecastSettings(frequency="W" if weekly else "D", quirks={"missing_periods": "zero"})
    )
    gaps = filled.filter((pl.col("sku_id") == "x") & pl.col("date").is_in(missing))
    assert filled.height == 20 and gaps["units"].to_list() == [0.0, 0.0]
    assert pipeline.missing_periods(filled, step).is_empty()


# --------------------------------------------------------------------------- history each model needs


@pytest.mark.parametrize(
    ("season", "periods", "model"),
    [
        (7, 14, "AutoARIMA"),
        (7, 10, "SeasonalNaive"),
        (7, 5, "Theta"),
        (7, 3, None),
        (52, 104, "AutoARIMA"),
        (52, 60, "SeasonalNaive"),
        (52, 30, "AutoETS"),
        (52, 6, "Theta"),
    ],
)
def test_a_series_too_short_for_its_model_gets_the_next_candidate_that_fits(season, periods, model):
    assert fitting_model("AutoARIMA", periods, season) == model
    assert SUBSTITUTES == ("SeasonalNaive", "AutoETS", "Theta")


def test_short_series_are_fitted_with_a_substitute_and_counted():
    rng = np.random.default_rng(0)
    lengths = {"s/long": 30, "s/week": 10, "s/five": 5, "s/two": 2}
    hist = pl.concat(
        [
            pl.DataFrame(
                {
                    "unique_id": uid,
                    "ds": [date(2026, 1, 1) + timedelta(days=k) for k in range(n)],
                    "y": rng.poisson(8, n).astype(float),
                }
            )
            for uid, n in lengths.items()
        ]
    )
    periods = Periods(SETTINGS.cadence)
    stat, fits = fit_stat_models(hist, {"AutoARIMA": hist.select("unique_id").unique()}, SETTINGS, periods)
    models = {uid: model.alias for by_store in stat.values() for uid, model in by_store.items()}
    assert models == {"s/long": "AutoARIMA", "s/week": "SeasonalNaive", "s/five": "Theta"}
    assert all(m.candidate == "AutoARIMA" for by_store in stat.values() for m in by_store.values())
    counts = {r["model"]: r["series"] for r in fits.iter_rows(named=True)}
    assert counts == {"AutoARIMA": 1, "SeasonalNaive": 1, "Theta": 1, "none fits: global model": 1}


# --------------------------------------------------------------------------- a forecast for every series


def test_every_series_gets_a_forecast_through_the_fallback_chain(data):
    """A product launched three days before the origin, routed to LightGBM whose lags need a week: the mean of
    its group in its store stands in, and says so."""
    origin = WORLD.last_day - timedelta(days=7)
    everywhere = dict.fromkeys(SEGMENTS, LIGHTGBM)
    fitted = fit_models(
        data.until(origin - timedelta(days=14)),
        SETTINGS,
        periods_of(SETTINGS, data.sales),
        routing=everywhere,
    )
    store, sku = data.stores["store_id"][0], "sku99999"
    newcomer = pl.DataFrame(
        {"store_id": store, "sku_id": sku, "date": [origin - timedelta(days=k) for k in (2, 1, 0)], "units": 3.0}
    )
    products = pl.concat(
        [data.products, data.products.head(1).with_columns(sku_id=pl.lit(sku))], how="vertical_relaxed"
    )
    grown = CaseData(data.stores, products, pl.concat([data.sales, newcomer]), data.promotions, data.events)
    night = forecast_candidates(fitted, grown, origin, 14, SETTINGS)
    mine = night.filter(pl.col("sku_id") == sku)
    assert mine.height == 14 and mine["model"].unique().to_list() == [FALLBACKS[0]] and mine["yhat"].min() > 0
    every = grown.sales.filter(pl.col("date").is_between(origin - timedelta(days=27), origin))
    assert night["unique_id"].n_unique() == every.select("store_id", "sku_id").n_unique()
    assert night["yhat"].null_count() == 0


def test_a_product_listed_before_it_sells_gets_no_group_prior(data):
    """Rows of 0 before the first sale (as in the M5 files): the new-product model must not forecast the
    group's mean for a product nobody buys yet; its validation WAPE stays sane."""
    origin = WORLD.last_day - timedelta(days=21)
    store = data.stores["store_id"][0]
    sku = data.products["sku_id"][0]
    first_day = origin + timedelta(days=10)
    listed = pl.DataFrame(
        {
            "store_id": store,
            "sku_id": "sku_listed",
            "date": [origin - timedelta(days=60 - k) for k in range(60 + 21)],
        }
    ).with_columns(units=pl.when(pl.col("date") >= first_day).then(4.0).otherwise(0.0))
    products = pl.concat(
        [data.products, data.products.filter(pl.col("sku_id") == sku).with_columns(sku_id=pl.lit("sku_listed"))]
    )
    grown = CaseData(data.stores, products, pl.concat([data.sales, listed]), data.promotions, data.events)
    periods = periods_of(SETTINGS, grown.sales)
    fitted = fit_models(grown.until(origin), SETTINGS, periods, candidates=True)
    ids = pl.DataFrame({"store_id": [store], "sku_id": ["sku_listed"]})
    rows = forecast_candidates(fitted, grown, [origin], 7, SETTINGS, which="all", ids=ids)
    assert rows["segment"].unique().to_list() == ["new"]
    assert rows[FAMILY].max() < 1.0, "no sale yet at the origin: no group mean"


def test_wape_counts_returns_as_volume():
    """Units kept negative (returns) must not shrink the denominator to nothing: sum |e| / sum |y|."""
    rows = pl.DataFrame(
        {
            "unique_id": ["s/0"] * 3,
            "segment": ["new"] * 3,
            "step": [7, 7, 7],
            "actual": [5.0, -4.0, 1.0],
            "SeasonalNaive": [3.0, 3.0, 3.0],
            FAMILY: [3.0, 3.0, 3.0],
            LIGHTGBM: [3.0, 3.0, 3.0],
            "routed": [3.0, 3.0, 3.0],
            "origin": [date(2026, 1, 1)] * 3,
            "ds": [date(2026, 1, 8)] * 3,
        },
        schema_overrides={"step": pl.Int32},
    )
    train = pl.DataFrame({"unique_id": ["s/0"] * 14, "ds": [date(2025, 12, d) for d in range(1, 15)], "y": [1.0] * 14})
    report = accuracy(rows, train, SETTINGS, Periods(SETTINGS.cadence))
    wape = report.filter((pl.col("model") == FAMILY) & (pl.col("step") == 7))["wape"].item()
    assert wape == pytest.approx(11 / 10)
    _, selection = select_routing(rows, SETTINGS)
    assert selection.filter(pl.col("model") == FAMILY)["wape"].item() == pytest.approx(11 / 10)


# --------------------------------------------------------------------------- reconciliation


def test_every_method_is_coherent_and_the_backtest_picks_the_lowest_mean_wape(data):
    periods = periods_of(SETTINGS, data.sales)
    last = data.last_day
    base = (
        data.sales.filter(pl.col("date") > last - timedelta(days=7))
        .select("store_id", "sku_id", pl.col("date") + pl.duration(days=7), pl.col("units").alias("yhat"))
        .rename({"date": "ds"})
    )
    labels = sorted(base["ds"].unique().to_list())
    aggregate = aggregate_base_forecasts(
        aggregate_history(data.sales, data.stores, SETTINGS), labels, periods, SETTINGS
    )
    table = reconcile(base, aggregate, data.stores, SETTINGS)
    assert set(METHODS) <= set(table.columns)
    for method in METHODS:
        stats = coherence(table, method)
        assert stats["max_relative_gap"] < 1e-6 and stats["negative_values"] == 0, method
    scores = pl.DataFrame(
        {
            "method": [BOTTOM_UP] * 2 + [TOP_DOWN] * 2 + [MIN_TRACE] * 2,
            "level": ["national", "sku"] * 3,
            "wape": [0.10, 0.40, 0.05, 0.50, 0.08, 0.38],
        }
    )
    assert best_method(scores, BOTTOM_UP) == MIN_TRACE
    assert best_method(scores.filter(pl.col("method") != MIN_TRACE), BOTTOM_UP) == BOTTOM_UP  # a tie keeps the default
    assert best_method(scores.head(0), TOP_DOWN) == TOP_DOWN


# --------------------------------------------------------------------------- static attributes


def test_store_and_product_attributes_named_in_the_settings_become_features(data):
    settings = ForecastSettings(
        models={"lightgbm": SMALL}, attributes={"stores": {"floor_m2": "number"}, "products": {"brand": "category"}}
    )
    schema = pipeline.table_schema("stores", settings)
    assert (
        "floor_m2" in schema.column_names and "floor_m2" not in pipeline.table_schema("stores", SETTINGS).column_names
    )
    stores = data.stores.with_columns(floor_m2=pl.Series([800.0, 2500.0]))
    products = data.products.with_columns(brand=pl.lit("own"))
    richer = CaseData(stores, products, data.sales, data.promotions, data.events, data.covariates)
    fitted = fit_models(richer.until(data.last_day), settings, periods_of(settings, data.sales))
    static = set(fitted.lightgbm.ts.static_features_.columns)
    assert {"floor_m2", "brand_code"} <= static
