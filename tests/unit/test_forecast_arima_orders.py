"""AutoARIMA's orders searched every `models.arima_search_every` weeks, a rotating share of the series each week,
their parameters re-estimated at every refit: the forecasts stay within the stated tolerance of a full search."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from lakehouse.forecast import world as gen
from lakehouse.forecast.data import CaseData, history, periods_of
from lakehouse.forecast.models import FittedModels, fit_stat_models
from lakehouse.forecast.segmentation import segment_series
from lakehouse.forecast.settings import ForecastSettings
from lakehouse.forecast.statistical import arima_orders, reusable_orders

WORLD = gen.WorldConfig(stores=1, skus=60, seed=11)
# Kept orders against a fresh search at the same cut-off, on the series that kept theirs: relative L1 distance of
# the 14-day forecasts and the change of their WAPE against the actuals, at most (measured on this world: 0.017 and
# 0.0003; the kept orders are two weeks old).
TOLERANCE = {"distance": 0.10, "wape": 0.02}


def test_each_series_is_searched_once_every_k_weeks_and_never_with_older_orders():
    ids = [f"S{s}/P{i}" for s in range(3) for i in range(200)]
    k, start = 4, date(2026, 1, 4)
    searched = dict.fromkeys(ids, start)
    for week in range(1, 3 * k + 1):
        as_of = start + timedelta(weeks=week)
        due = [u for u in ids if not reusable_orders(u, f"1,0,0,0,0,0,1,0|{searched[u]}", as_of, k)]
        assert 0.15 < len(due) / len(ids) < 0.35  # about 1/k each week: every refit costs the same
        for u in due:
            searched[u] = as_of
        assert all((as_of - d).days < 7 * k for d in searched.values())
    assert reusable_orders(ids[0], None, start, k) == ""  # no earlier search
    assert reusable_orders(ids[0], f"1,0,0,0,0,0,1,0|{start}", start, None) == ""  # searches every time
    stale = f"1,0,0,0,0,0,1,0|{start - timedelta(weeks=k)}"
    assert all(reusable_orders(u, stale, start, k) == "" for u in ids)


def test_the_setting_is_whole_weeks():
    assert ForecastSettings().arima_search_weeks == 4
    assert ForecastSettings(models={"arima_search_every": None}).arima_search_weeks is None
    with pytest.raises(ValueError, match="whole weeks"):
        ForecastSettings(models={"arima_search_every": "10d"})


def test_kept_orders_forecast_within_tolerance_of_a_full_search():
    tables = gen.master_tables(WORLD)
    store = tables["stores"]["store_id"][0]
    data = CaseData(
        tables["stores"],
        tables["products"],
        gen.store_sales(WORLD, tables, store),
        tables["promotions"],
        tables["events"],
        tables["covariates"],
    )
    settings = ForecastSettings()
    periods = periods_of(settings, data.sales)
    now = WORLD.last_day - timedelta(days=14)
    before = now - timedelta(weeks=2)
    ids = {"AutoARIMA": segment_series(data.until(now), settings, periods).filter(pl.col("segment") == "stable")}
    assert ids["AutoARIMA"].height >= 10

    config = {"models": settings.models.model_dump(mode="json")}

    def fit(as_of, previous=None):
        prior = (
            None if previous is None else FittedModels(before, periods, ids["AutoARIMA"], {}, previous, None, {}, [])
        )
        if prior is not None:
            prior.config = config
        return fit_stat_models(history(data.until(as_of)), ids, settings, periods, as_of=as_of, previous=prior)[0]

    searched_before = fit(before)
    fresh = fit(now)
    kept = fit(now, searched_before)
    store_models = kept[store]
    reused = [u for u, m in store_models.items() if arima_orders(m) and arima_orders(m).endswith(str(before))]
    assert len(reused) >= 0.5 * len(store_models)  # the share not due this week kept its orders ...
    assert all(type(store_models[u]).__name__ == "ARIMA" for u in reused)  # ... and only estimated parameters
    assert all(arima_orders(m).endswith(str(now)) for u, m in store_models.items() if u not in reused)

    recent = history(data.until(now)).group_by("unique_id", maintain_order=True).tail(settings.stat_window_periods)
    actual = history(data).filter(pl.col("ds") > now).group_by("unique_id", maintain_order=True).head(14)
    a, b, y = [], [], []
    for uid in reused:
        window = recent.filter(pl.col("unique_id") == uid)["y"].to_numpy().astype(float)
        a.append(fresh[store][uid].forward(y=window, h=14)["mean"])
        b.append(store_models[uid].forward(y=window, h=14)["mean"])
        y.append(actual.filter(pl.col("unique_id") == uid)["y"].to_numpy().astype(float))
    a, b, y = np.concatenate(a), np.concatenate(b), np.concatenate(y)
    distance = np.abs(b - a).sum() / np.abs(a).sum()
    wape = [np.abs(f - y).sum() / np.abs(y).sum() for f in (a, b)]
    assert distance <= TOLERANCE["distance"], distance
    assert abs(wape[1] - wape[0]) <= TOLERANCE["wape"], wape
