"""Forecast domain: generator, segmentation rules, point-in-time features, models, reconciliation."""

from datetime import date, timedelta

import polars as pl
import pytest

from lakehouse.forecast import world as gen
from lakehouse.forecast.config import FREQUENCIES, RULES, SETTINGS, WorldConfig, scale_counts
from lakehouse.forecast.features import StoreData, exogenous, history, promotions_known, weather_known
from lakehouse.forecast.models import fit_global_models, fit_stat_models, forecast_store, stat_windows, training_frame
from lakehouse.forecast.reconcile import aggregate_base_forecasts, aggregate_history, coherence, reconcile
from lakehouse.forecast.segmentation import assign_segments, segment_store, store_profile

WORLD = WorldConfig(stores=3, skus=24, seed=3)


@pytest.fixture(scope="module")
def tables():
    return gen.master_tables(WORLD)


@pytest.fixture(scope="module")
def stores(tables):
    return [
        StoreData(s, tables["products"], gen.store_sales(WORLD, tables, s["store_id"]), tables["promotions"], tables["weather_forecasts"], tables["events"])
        for s in tables["stores"].iter_rows(named=True)
    ]


def test_scale_setting():
    assert scale_counts("full") == (150, 8000)
    assert scale_counts("8x300") == (8, 300)
    with pytest.raises(ValueError, match="STORESxSKUS"):
        scale_counts("huge")


def test_same_seed_same_sales_whatever_the_order(tables):
    a = gen.store_sales(WORLD, tables, "east-s003")
    gen.store_sales(WORLD, tables, "north-s001")
    assert a.equals(gen.store_sales(WORLD, tables, "east-s003"))
    assert not a.equals(gen.store_sales(WORLD.with_(seed=4), tables, "east-s003"))


def test_promotions_keep_every_version_published_before_the_end(tables):
    promos = tables["promotions"]
    assert promos.filter(pl.col("version") > 1).height > 0
    assert promos["published_date"].max() <= WORLD.last_day
    assert (promos["start_date"] > WORLD.last_day).any(), "promotions announced for after the history"


def test_weather_is_issued_at_most_seven_days_ahead(tables):
    lead = (tables["weather_forecasts"]["target_date"] - tables["weather_forecasts"]["issue_date"]).dt.total_days()
    assert lead.min() == 1 and lead.max() == 7


def test_tourist_stores_peak_in_summer(stores):
    profiles = {p["store_id"]: p for p in (store_profile(s, WORLD.last_day, RULES) for s in stores)}
    for store in stores:
        profile = profiles[store.store_id]
        assert profile["measured_type"] == store.store["store_type"], profile


def test_segment_rules_in_order():
    stats = pl.DataFrame(
        {
            "sku_id": ["young", "promo", "seasonal", "erratic", "stable", "weak_promo"],
            "history_days": [100, 900, 900, 900, 900, 900],
            "cv": [0.1, 0.5, 0.3, 0.8, 0.2, 0.2],
            "seasonality_strength": [0.9, 0.6, 0.5, 0.1, 0.1, 0.1],
            "promo_share": [0.5, 0.2, 0.0, 0.0, 0.0, 0.2],
            "promo_uplift": [3.0, 2.0, 1.0, 1.0, 1.0, 1.1],
        }
    )
    got = dict(assign_segments(stats, RULES).select("sku_id", "segment").iter_rows())
    assert got == {"young": "new", "promo": "promo", "seasonal": "seasonal", "erratic": "seasonal", "stable": "stable", "weak_promo": "stable"}


def test_the_generator_yields_the_four_segments(stores):
    segments = pl.concat([segment_store(s, WORLD.last_day, RULES) for s in stores])
    assert set(segments["segment"]) == {"stable", "seasonal", "new", "promo"}


def test_promotion_revised_after_origin_is_invisible_at_origin(tables):
    promos = tables["promotions"]
    origin = WORLD.last_day - timedelta(days=30)
    upcoming = promos.filter((pl.col("published_date") <= origin) & (pl.col("start_date") > origin + timedelta(days=2)) & (pl.col("start_date") <= origin + timedelta(days=10))).row(0, named=True)
    revision = {**upcoming, "version": 9, "discount_pct": 0.9, "published_date": origin + timedelta(days=1)}
    revised = pl.concat([promos, pl.DataFrame([revision], schema=promos.schema)])
    assert promotions_known(revised, origin).equals(promotions_known(promos, origin))
    later = promotions_known(revised, origin + timedelta(days=1)).filter(pl.col("sku_id") == upcoming["sku_id"])
    assert 0.9 in later["discount_pct"].to_list()


def test_weather_known_at_origin_uses_only_forecasts_issued_by_then(tables):
    origin = WORLD.last_day - timedelta(days=20)
    known = weather_known(tables["weather_forecasts"], origin)
    assert known["date"].min() == origin + timedelta(days=1)
    assert known["date"].max() == origin + timedelta(days=7)


def test_exogenous_without_optional_tables_leaves_their_features_out(stores):
    bare = StoreData(stores[0].store, stores[0].products, stores[0].sales, pl.DataFrame(), pl.DataFrame(), pl.DataFrame())
    days = [WORLD.last_day + timedelta(days=k) for k in range(1, 3)]
    assert set(exogenous(bare, days, WORLD.last_day, FREQUENCIES["D"]).columns) == {"ds", "unique_id", "product_age"}
    full = exogenous(stores[0], days, WORLD.last_day, FREQUENCIES["D"]).columns
    assert {"promo_discount", "temp_c", "is_holiday", "local_event"} <= set(full)


def _fit_and_forecast(stores, origin, freq):
    segments = {s.store_id: segment_store(s, origin, RULES) for s in stores}
    frames = [training_frame(s, origin, freq, SETTINGS, segments[s.store_id]) for s in stores]
    global_models = fit_global_models(frames, origin, freq, SETTINGS)
    out = []
    for s in stores[:2]:
        fitted = fit_stat_models(stat_windows(history(s.until(origin), freq), segments[s.store_id], freq), freq, SETTINGS)
        out.append(forecast_store(s, segments[s.store_id], fitted, global_models, origin, freq, SETTINGS))
    return pl.concat(out)


@pytest.fixture(scope="module")
def forecasts(stores):
    return _fit_and_forecast(stores, WORLD.last_day, FREQUENCIES["D"])


def test_every_series_gets_d1_to_d14_from_its_segment_model(forecasts, stores):
    assert forecasts.group_by("store_id", "sku_id").len()["len"].unique().to_list() == [14]
    assert forecasts["ds"].min() == WORLD.last_day + timedelta(days=1)
    models = dict(forecasts.select("segment", "model").unique().iter_rows())
    assert models.get("stable") == "AutoARIMA" and models.get("seasonal") == "MSTL"
    assert models.get("promo") == "LightGBM" and models.get("new") == "FamilyMean+LightGBM"
    assert (forecasts["yhat"] >= 0).all()


def test_weekly_frequency_forecasts_two_weeks(stores):
    few = [StoreData(s.store, s.products.head(8), s.sales.filter(pl.col("sku_id").is_in(s.products.head(8)["sku_id"].implode())), s.promotions, s.weather_forecasts, s.events) for s in stores[:2]]
    weekly = _fit_and_forecast(few, WORLD.last_day - timedelta(days=WORLD.last_day.weekday() + 1), FREQUENCIES["W"])
    assert weekly.group_by("store_id", "sku_id").len()["len"].unique().to_list() == [2]
    assert {d.weekday() for d in weekly["ds"].to_list()} == {0}


def test_reconciliation_is_coherent_bottom_up_and_top_down(forecasts, tables, stores):
    freq = FREQUENCIES["D"]
    totals = pl.concat([history(s, freq).group_by("ds").agg(pl.col("y").sum()).with_columns(store_id=pl.lit(s.store_id)) for s in stores[:2]])
    aggregate = aggregate_base_forecasts(aggregate_history(totals, tables["stores"]), freq, sorted(forecasts["ds"].unique().to_list()))
    rec = reconcile(forecasts, aggregate, tables["stores"])
    for name in ("operational", "strategic"):
        stats = coherence(rec[name])
        assert stats["max_relative_gap"] < 1e-9 and stats["negative_values"] == 0
        assert stats["parents_checked"] == 1 + 2 + 2  # national, two regions, two stores
    bottom = rec["operational"].filter(pl.col("level") == "sku").sort("unique_id", "ds")
    assert bottom["yhat"].to_list() == pytest.approx(bottom["base"].to_list())  # bottom-up keeps each model's forecast
    national_base = aggregate.filter(pl.col("unique_id") == "total").sort("ds")["yhat"].to_list()
    assert rec["strategic"].filter(pl.col("level") == "national").sort("ds")["yhat"].to_list() == pytest.approx(national_base)


def test_coherence_detects_an_incoherent_or_negative_table():
    table = pl.DataFrame(
        {"unique_id": ["total", "total/north", "total/south"], "level": ["national", "region", "region"], "ds": [date(2026, 1, 1)] * 3, "yhat": [10.0, 4.0, 5.0]}
    )
    assert coherence(table)["max_relative_gap"] == pytest.approx(0.1)
    negative = table.with_columns(yhat=pl.Series([1.0, 4.0, -3.0]))
    assert coherence(negative)["negative_values"] == 1


def test_raw_table_docs_are_current():
    from pathlib import Path

    from lakehouse.forecast.schemas import markdown

    docs = Path(__file__).resolve().parents[2] / "docs" / "forecast_raw_tables.md"
    assert docs.read_text() == markdown() + "\n", "regenerate docs/forecast_raw_tables.md from lakehouse.forecast.schemas.markdown()"
