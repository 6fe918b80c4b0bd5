"""Forecast domain: settings, periods, point-in-time features at any level, segmentation, models from
fitted state at several origins and horizons, reconciliation on a hierarchy named by the data."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from lakehouse.forecast import world as gen
from lakehouse.forecast.data import CaseData, Periods, history, periods_of
from lakehouse.forecast.features import (
    covariates_carried,
    covariates_known,
    exogenous,
    match_scope,
    promotions_known,
    series_attributes,
    with_age,
)
from lakehouse.forecast.models import CANDIDATES, fit_models, forecast_candidates
from lakehouse.forecast.reconcile import (
    BOTTOM_UP,
    TOP_DOWN,
    aggregate_base_forecasts,
    aggregate_history,
    coherence,
    reconcile,
)
from lakehouse.forecast.segmentation import assign_segments
from lakehouse.forecast.settings import LIGHTGBM, SEGMENTS, ForecastSettings

WORLD = gen.WorldConfig(stores=3, skus=10, seed=3)
SMALL_LGBM = {
    "objective": "tweedie",
    "n_estimators": 40,
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_child_samples": 20,
    "n_jobs": 1,
    "verbosity": -1,
}
SETTINGS = ForecastSettings(models={"lightgbm": SMALL_LGBM})


@pytest.fixture(scope="module")
def data() -> CaseData:
    tables = gen.master_tables(WORLD)
    sales = pl.concat([gen.store_sales(WORLD, tables, s) for s in tables["stores"]["store_id"]])
    return CaseData(
        tables["stores"], tables["products"], sales, tables["promotions"], tables["events"], tables["covariates"]
    )


@pytest.fixture(scope="module")
def periods(data) -> Periods:
    return periods_of(SETTINGS, data.sales)


# --------------------------------------------------------------------------- settings and periods


def test_default_settings_are_the_seeds_and_durations_follow_the_frequency(monkeypatch):
    daily = ForecastSettings()
    assert daily.horizon_periods == 14 and daily.eval_step == 7 and daily.cadence.step_label(7) == "D+7"
    assert daily.targets.mape == {"stable": 0.12, "seasonal": 0.18, "new": 0.25, "promo": 0.30}
    assert daily.economics.currency == "EUR" and daily.economics.defaults
    monkeypatch.setenv("LAKEHOUSE_FORECAST_FREQUENCY", "W")
    weekly = ForecastSettings()
    assert weekly.horizon_periods == 2 and weekly.planning_periods == 52 and weekly.eval_step == 1
    assert weekly.cadence.step_label(1) == "W+1" and weekly.cadence.season == 52
    with pytest.raises(ValueError, match="whole number of weeks"):
        ForecastSettings(frequency="W", horizon="10d")
    assert ForecastSettings(frequency="D", planning_horizon="366d").planning_periods == 366


def test_economics_say_when_they_are_the_seeds_defaults():
    from lakehouse.forecast.evaluation import economics_note

    assert "seed's defaults" in economics_note(ForecastSettings())
    note = economics_note(ForecastSettings(economics={"currency": "USD", "gross_margin": 0.3}))
    assert "currency, gross_margin" in note and "defaults kept for" in note


@pytest.mark.parametrize(
    ("dates", "day", "label"),
    [
        ("end", date(2026, 11, 25), date(2026, 11, 27)),
        ("start", date(2026, 11, 25), date(2026, 11, 20)),
        ("end", date(2026, 11, 27), date(2026, 11, 27)),
    ],
)
def test_weekly_periods_end_or_start_on_the_datas_weekday(dates, day, label):
    settings = ForecastSettings(frequency="W", week_dates=dates)
    weekly = pl.DataFrame({"date": [date(2026, 11, 20), date(2026, 11, 27)]})  # Fridays
    periods = periods_of(settings, weekly)
    assert periods.alias == "W-FRI"
    assert pl.select(periods.label(pl.lit(day))).item() == label


# --------------------------------------------------------------------------- point in time, any level


def _days(day: date, cutoff: date) -> pl.DataFrame:
    return pl.DataFrame({"date": [day], "cutoff": [cutoff]})


def _announced(promos: pl.DataFrame, origin: date, within: int) -> pl.DataFrame:
    """Promotions starting within `within` days after the origin, every version published by then."""
    settled = (
        promos.group_by("promo_id").agg(pl.col("published_date").max().alias("last")).filter(pl.col("last") <= origin)
    )
    return (
        promos.join(settled, on="promo_id")
        .filter(pl.col("start_date").is_between(origin + timedelta(days=1), origin + timedelta(days=within)))
        .sort("promo_id", "version")
    )


def test_a_promotion_revised_after_the_cutoff_is_invisible_at_it(data):
    promos = data.promotions
    origin = WORLD.last_day - timedelta(days=30)
    upcoming = _announced(promos, origin, 60).row(-1, named=True)
    revision = {**upcoming, "version": 9, "discount": 0.9, "published_date": origin + timedelta(days=1)}
    revised = pl.concat([promos, pl.DataFrame([revision], schema=promos.schema)])
    day = _days(upcoming["start_date"], origin)
    assert promotions_known(revised, day).equals(promotions_known(promos, day))
    later = promotions_known(revised, _days(upcoming["start_date"], origin + timedelta(days=1)))
    assert later.filter(pl.col("promo_id") == upcoming["promo_id"])["discount"].to_list() == [0.9]


def test_a_covariate_counts_from_when_it_was_known_and_observed_ones_only_as_lags():
    rows = pl.DataFrame(
        {
            "name": ["temp", "temp", "price", "fuel"],
            "date": [date(2026, 1, 10)] * 4,
            "value": [5.0, 7.0, 2.5, 1.8],
            "known_from": [date(2026, 1, 3), date(2026, 1, 8), None, None],
        }
    )
    settings = ForecastSettings(observed_covariates=("fuel",))
    known = covariates_known(rows, _days(date(2026, 1, 10), date(2026, 1, 5)), settings)
    assert dict(known.select("name", "value").iter_rows()) == {
        "temp": 5.0,
        "price": 2.5,
    }  # the forecast issued by the 5th; a plan known in advance
    assert dict(
        covariates_known(rows, _days(date(2026, 1, 10), date(2026, 1, 9)), settings).select("name", "value").iter_rows()
    ) == {"temp": 7.0, "price": 2.5}
    lagged = covariates_known(rows, _days(date(2026, 1, 24), date(2026, 1, 23)), settings)  # 10th + 14 days
    assert dict(lagged.select("name", "value").iter_rows()) == {"fuel_lag14": 1.8}


def _planned(rows: list[tuple], known_from: date | None = None) -> pl.DataFrame:
    """Covariate rows (name, date, value, store_id, sku_id), known from the start unless `known_from`."""
    return pl.DataFrame(
        rows,
        schema={"name": pl.String, "date": pl.Date, "value": pl.Float64, "store_id": pl.String, "sku_id": pl.String},
        orient="row",
    ).with_columns(known_from=pl.lit(known_from, pl.Date))


def test_planned_covariates_beyond_the_files_last_day_carry_their_last_values():
    """A user's file that ends today holds no price of the horizon: the values in force on its last day are
    carried forward (the replay's nightly on the M5 kit forecast a tenth of the demand with the prices missing)."""
    today = date(2016, 2, 28)
    rows = pl.concat(
        [
            _planned(
                [
                    ("price", today - timedelta(days=1), 2.0, "CA_1", "a"),
                    ("price", today, 2.5, "CA_1", "a"),  # changed on the last day: the new price holds
                    ("price", today - timedelta(days=9), 4.0, "CA_1", "b"),  # delisted before the last day
                    ("snap", today, 1.0, "CA_1", None),
                ]
            ),
            _planned([("temp", today + timedelta(days=1), 9.0, "CA_1", None)], known_from=today),  # a forecast
        ]
    )
    horizon = pl.DataFrame(
        {"date": [today + timedelta(days=k) for k in (1, 2, 3)], "cutoff": [today] * 3}
    )  # D+1..D+3 as known at the origin
    carried = covariates_carried(rows, horizon, ForecastSettings())
    got = {(r["name"], r["sku_id"], r["date"]): r["value"] for r in carried.iter_rows(named=True)}
    assert got == {
        **{("price", "a", today + timedelta(days=k)): 2.5 for k in (1, 2, 3)},
        **{("snap", None, today + timedelta(days=k)): 1.0 for k in (1, 2, 3)},
    }  # not the delisted product, not the dated forecast (its own cut-off rule says what was known)
    within = pl.DataFrame({"date": [today], "cutoff": [today - timedelta(days=1)]})
    assert covariates_carried(rows, within, ForecastSettings()).is_empty()  # the file's own days keep their values
    observed = covariates_carried(rows, horizon, ForecastSettings(observed_covariates=("price", "snap")))
    assert observed.is_empty()  # actuals enter as lags only


def test_a_file_that_ends_at_the_origin_forecasts_as_one_with_the_planned_prices():
    """Training/serving skew met by the forecast replay: the kit's prices are rows of the sales file, so the night's
    file holds none for the horizon, and a product is unpriced in training only before it is listed (no sale).
    With the prices carried forward the night's forecasts are those made with the plan (the price holds
    through the horizon here); missing, LightGBM's forecasts were off by 65 % here and by 90 % on the kit."""
    tables = gen.master_tables(WORLD)
    origin, start = date(2026, 6, 30), date(2024, 8, 1)
    listed = start + timedelta(days=250)
    rng = np.random.default_rng(0)
    sales, prices = [], []
    for store in tables["stores"]["store_id"].to_list()[:2]:
        for k, sku in enumerate(tables["products"]["sku_id"].to_list()[:3]):
            for day in (start + timedelta(days=d) for d in range((origin - start).days + 15)):
                price = (2.0 + k) * (0.8 if ((day - start).days // 30) % 3 == 0 else 1.0)
                if day >= listed:
                    prices.append(("price", day, price, store, sku))
                if day <= origin:
                    sales.append((store, sku, day, 0 if day < listed else int(rng.poisson(40 / price))))
    sales = pl.DataFrame(
        sales, schema={"store_id": pl.String, "sku_id": pl.String, "date": pl.Date, "units": pl.Int64}, orient="row"
    )
    plan = CaseData(tables["stores"], tables["products"], sales, covariates=_planned(prices))
    tonight = CaseData(plan.stores, plan.products, sales, covariates=plan.covariates.filter(pl.col("date") <= origin))
    model = fit_models(
        plan.until(origin), SETTINGS, periods_of(SETTINGS, sales), routing=dict.fromkeys(SEGMENTS, LIGHTGBM)
    )
    assert "cov_price" in model.dynamic
    planned = forecast_candidates(model, plan, origin, 14, SETTINGS)
    served = forecast_candidates(model, tonight, origin, 14, SETTINGS)
    assert served["yhat"].to_list() == pytest.approx(planned["yhat"].to_list())


def test_rows_apply_at_any_level_of_the_hierarchy(data):
    attributes = series_attributes(data, SETTINGS)
    store, sku = attributes.row(0, named=True)["store_id"], attributes.row(0, named=True)["sku_id"]
    category = attributes.row(0, named=True)["category"]
    rows = pl.DataFrame(
        {
            "what": ["chain", "region", "store", "sku in store", "category"],
            "store_id": [None, None, store, store, None],
            "region": [None, "north", None, None, None],
            "sku_id": [None, None, None, sku, None],
            "category": [None, None, None, None, category],
        }
    )
    matched = match_scope(rows, attributes, SETTINGS).group_by("what").len()
    counts = dict(matched.iter_rows())
    assert counts["chain"] == attributes.height
    assert counts["region"] == attributes.filter(pl.col("region") == "north").height
    assert counts["store"] == attributes.filter(pl.col("store_id") == store).height
    assert counts["sku in store"] == 1
    assert counts["category"] == attributes.filter(pl.col("category") == category).height


def test_exogenous_features_are_left_out_without_their_tables(data, periods):
    bare = CaseData(data.stores, data.products, data.sales)
    attributes = series_attributes(bare, SETTINGS).head(2)
    requests = (
        attributes.select("unique_id")
        .join(pl.DataFrame({"ds": [WORLD.last_day + timedelta(days=1)]}), how="cross")
        .with_columns(as_of=pl.lit(WORLD.last_day))
    )
    assert set(exogenous(bare, attributes, requests, SETTINGS, periods).columns) == {"unique_id", "ds", "as_of"}
    full = exogenous(data, attributes, requests, SETTINGS, periods).columns
    assert {"promo_discount", "event", "event_eve", "event_holiday", "event_local_event", "cov_temp_c"} <= set(full)


# --------------------------------------------------------------------------- segments, models


def test_segment_rules_in_order(periods):
    stats = pl.DataFrame(
        {
            "unique_id": ["young", "promo", "seasonal", "erratic", "stable", "weak_promo", "never_sold"],
            "history_periods": [100, 900, 900, 900, 900, 900, None],
            "cv": [0.1, 0.5, 0.3, 0.8, 0.2, 0.2, 0.0],
            "seasonality_strength": [0.9, 0.6, 0.5, 0.1, 0.1, 0.1, 0.0],
            "promo_share": [0.5, 0.2, 0.0, 0.0, 0.0, 0.2, 0.0],
            "promo_uplift": [3.0, 2.0, 1.0, 1.0, 1.0, 1.1, 1.0],
        }
    )
    got = dict(assign_segments(stats, SETTINGS, periods).select("unique_id", "segment").iter_rows())
    assert got == {
        "young": "new",
        "promo": "promo",
        "seasonal": "seasonal",
        "erratic": "seasonal",
        "stable": "stable",
        "weak_promo": "stable",
        "never_sold": "new",
    }


@pytest.fixture(scope="module")
def fitted(data, periods):
    return fit_models(data.until(WORLD.last_day - timedelta(days=28)), SETTINGS, periods, candidates=True)


def test_the_generator_yields_the_four_segments(fitted):
    assert set(fitted.segments["segment"]) == {"stable", "seasonal", "new", "promo"}


def test_the_age_feature_stops_at_the_new_product_span(fitted, periods):
    """Past the new-product span, age would count calendar time only, which a tree cannot extrapolate."""
    assert fitted.age_cap == 26 * 7 == SETTINGS.cadence.periods(SETTINGS.segmentation.new_max_history)
    day = date(2026, 1, 1)
    frame = pl.DataFrame(
        {
            "unique_id": ["old", "young", "unsold"],
            "ds": [day] * 3,
            "as_of": [None, None, None],
        },
        schema_overrides={"as_of": pl.Date},
    )
    first = pl.DataFrame(
        {"unique_id": ["old", "young"], "first_sale": [day - timedelta(days=900), day - timedelta(days=30)]}
    )
    aged = dict(with_age(frame, first, periods, fitted.age_cap).select("unique_id", "age").iter_rows())
    assert aged == {"old": 182.0, "young": 30.0, "unsold": None}
    assert dict(with_age(frame, first, periods).select("unique_id", "age").iter_rows())["old"] == 900.0


def test_every_candidate_forecasts_several_origins_from_fitted_state(data, fitted):
    origins = [fitted.as_of + timedelta(days=k) for k in (0, 7)]
    rows = forecast_candidates(fitted, data, origins, 14, SETTINGS, which="all")
    assert rows.group_by("unique_id", "origin").len()["len"].unique().to_list() == [14]
    assert sorted(rows["origin"].unique()) == origins
    for segment, candidates in CANDIDATES.items():
        part = rows.filter(pl.col("segment") == segment)
        for model in candidates:
            assert part[model].null_count() < part.height, (segment, model)
    assert (
        rows.filter(pl.col("segment") == "stable")["MSTL"].null_count()
        == rows.filter(pl.col("segment") == "stable").height
    )  # not a stable candidate
    assert (rows["yhat"] >= 0).all() and rows["SeasonalNaive"].null_count() < rows.height


def test_the_routed_model_of_each_segment_forecasts_the_night(data, fitted):
    night = forecast_candidates(fitted, data, WORLD.last_day, 14, SETTINGS)
    assert night["ds"].min() == WORLD.last_day + timedelta(days=1)
    assert dict(night.select("segment", "model").unique().iter_rows()) == fitted.routing
    assert night.group_by("unique_id").len()["len"].unique().to_list() == [14]


def test_the_planning_horizon_comes_from_the_same_fitted_state(data, fitted):
    plan = forecast_candidates(fitted, data, WORLD.last_day, 366, SETTINGS)
    assert plan.group_by("unique_id").len()["len"].unique().to_list() == [366]
    night = forecast_candidates(fitted, data, WORLD.last_day, 14, SETTINGS)
    head = plan.filter(pl.col("step") <= 14).sort("unique_id", "step")["yhat"].to_list()
    assert head == pytest.approx(
        night.sort("unique_id", "step")["yhat"].to_list()
    )  # recursive: the first 14 periods are the night's


def test_a_promotion_revised_after_the_origin_does_not_change_its_forecast(data, fitted):
    """The seed's leakage incident: revise a promotion after T, forecast at T again, same numbers."""
    promos = data.promotions
    settled = promos.group_by("promo_id").agg(
        pl.col("published_date").max().alias("last"), pl.col("start_date").min().alias("start")
    )
    target = (
        settled.filter(
            (pl.col("start") > fitted.as_of + timedelta(days=3))
            & (pl.col("last") <= pl.col("start") - timedelta(days=3))
        )
        .sort("start")
        .row(0, named=True)
    )
    origin = target["start"] - timedelta(days=3)
    before = forecast_candidates(fitted, data, origin, 14, SETTINGS)
    latest = promos.filter(pl.col("promo_id") == target["promo_id"]).sort("version").row(-1, named=True)
    revision = {
        **latest,
        "version": 99,
        "discount": 0.5 if latest["discount"] < 0.5 else 0.1,
        "published_date": origin + timedelta(days=1),
    }
    revised = CaseData(
        data.stores,
        data.products,
        data.sales,
        pl.concat([promos, pl.DataFrame([revision], schema=promos.schema)]),
        data.events,
        data.covariates,
    )
    assert forecast_candidates(fitted, revised, origin, 14, SETTINGS).equals(before)


def test_weekly_rows_forecast_weeks_on_their_own_weekday(data):
    sales = (
        data.sales.filter(pl.col("sku_id").is_in(["sku00001", "sku00002", "sku00003"]))
        .with_columns(
            date=pl.col("date") + pl.duration(days=(7 - pl.col("date").dt.weekday()) % 7)  # the Sunday ending each week
        )
        .group_by("store_id", "sku_id", "date")
        .agg(pl.col("units").sum())
    )
    weekly = CaseData(data.stores, data.products, sales, data.promotions, data.events, data.covariates)
    settings = ForecastSettings(frequency="W", models={"lightgbm": SMALL_LGBM})
    periods = periods_of(settings, sales)
    assert periods.alias == "W-SUN"
    last = sales["date"].max()
    models = fit_models(weekly.until(last), settings, periods)
    night = forecast_candidates(models, weekly, last, settings.horizon_periods, settings)
    assert night.group_by("unique_id").len()["len"].unique().to_list() == [2]
    assert {d.weekday() for d in night["ds"]} == {6}
    assert night["yhat"].mean() > 5 * data.sales["units"].mean()  # weekly units, not daily


# --------------------------------------------------------------------------- reconciliation


def test_reconciliation_is_coherent_on_a_hierarchy_named_by_the_data(data, fitted, periods):
    stores = data.stores.rename({"region": "district"})
    settings = ForecastSettings(
        hierarchy={"store_levels": ["district"], "product_levels": ["category", "family"]},
        models={"lightgbm": SMALL_LGBM},
    )
    base = forecast_candidates(fitted, data, WORLD.last_day, 14, SETTINGS)
    labels = sorted(base["ds"].unique().to_list())
    aggregate = aggregate_base_forecasts(aggregate_history(data.sales, stores, settings), labels, periods, settings)
    table = reconcile(base.select("store_id", "sku_id", "ds", "yhat"), aggregate, stores, settings)
    assert set(table["level"]) == {"national", "district", "store", "sku"}
    for column in (BOTTOM_UP, TOP_DOWN):
        stats = coherence(table, column)
        assert stats["max_relative_gap"] < 1e-9 and stats["negative_values"] == 0
        assert stats["parents_checked"] == 1 + stores["district"].n_unique() + stores.height
    bottom = table.filter(pl.col("level") == "sku").sort("node", "ds")
    assert bottom[BOTTOM_UP].to_list() == pytest.approx(
        bottom["base"].to_list()
    )  # bottom-up keeps each model's forecast
    national = table.filter(pl.col("level") == "national").sort("ds")
    assert national[TOP_DOWN].to_list() == pytest.approx(
        aggregate.filter(pl.col("node") == "total").sort("ds")["yhat"].to_list()
    )


def test_coherence_detects_an_incoherent_or_negative_table():
    table = pl.DataFrame(
        {"node": ["total", "total/north", "total/south"], "ds": [date(2026, 1, 1)] * 3, "bottom_up": [10.0, 4.0, 5.0]}
    )
    assert coherence(table, BOTTOM_UP)["max_relative_gap"] == pytest.approx(0.1)
    assert coherence(table.with_columns(bottom_up=pl.Series([1.0, 4.0, -3.0])), BOTTOM_UP)["negative_values"] == 1


def test_history_is_one_row_per_series_and_period(data):
    hist = history(data)
    assert hist.select("unique_id", "ds").is_unique().all()
    assert hist["unique_id"].n_unique() == data.sales.select("store_id", "sku_id").n_unique()


def test_raw_table_docs_are_current():
    from pathlib import Path

    from lakehouse.forecast.schemas import markdown

    docs = Path(__file__).resolve().parents[2] / "docs" / "forecast_raw_tables.md"
    assert docs.read_text() == markdown() + "\n", (
        "regenerate: python -m lakehouse.forecast.schemas > docs/forecast_raw_tables.md"
    )
