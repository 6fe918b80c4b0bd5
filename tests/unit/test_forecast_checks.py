"""Each forecast monitoring check fails, with its severity, when its condition is broken."""

from datetime import date

import dagster as dg
import polars as pl

from assets.forecast.evaluation import drift_check
from assets.forecast.forecasts import OPERATIONAL_KEY, coherence_check, store_forecast_checks
from lakehouse.forecast.config import SETTINGS


def _forecasts(skus: int, steps: int = 14) -> pl.DataFrame:
    return pl.DataFrame({"sku_id": [f"sku{i}" for i in range(skus) for _ in range(steps)], "step": list(range(1, steps + 1)) * skus})


def _by_name(results):
    return {r.check_name: r for r in results}


def test_volume_and_missing_series_pass_on_a_complete_night():
    checks = _by_name(store_forecast_checks("north-s001", _forecasts(50), 50, 14, SETTINGS))
    assert checks["forecast_volume"].passed and checks["no_missing_series"].passed


def test_volume_fails_with_error_when_series_are_not_forecast():
    checks = _by_name(store_forecast_checks("north-s001", _forecasts(40), 50, 14, SETTINGS))
    assert not checks["forecast_volume"].passed
    assert checks["forecast_volume"].severity == dg.AssetCheckSeverity.ERROR
    assert checks["forecast_volume"].metadata["value"].value == 40


def test_missing_series_fails_when_a_horizon_is_short():
    short = pl.concat([_forecasts(49), _forecasts(1, steps=10).with_columns(sku_id=pl.lit("late"))])
    checks = _by_name(store_forecast_checks("north-s001", short, 50, 14, SETTINGS))
    assert checks["forecast_volume"].passed
    assert not checks["no_missing_series"].passed and checks["no_missing_series"].metadata["value"].value == 1


def test_coherence_check_fails_on_incoherent_or_negative_forecasts():
    table = pl.DataFrame({"unique_id": ["total", "total/north", "total/south"], "level": ["national", "region", "region"], "ds": [date(2026, 1, 1)] * 3, "yhat": [9.0, 4.0, 5.0]})
    assert coherence_check(table, OPERATIONAL_KEY, SETTINGS).passed
    assert not coherence_check(table.with_columns(yhat=pl.Series([10.0, 4.0, 5.0])), OPERATIONAL_KEY, SETTINGS).passed
    negative = coherence_check(pl.DataFrame({**table.to_dict(as_series=False), "yhat": [1.0, 4.0, -3.0]}), OPERATIONAL_KEY, SETTINGS)
    assert not negative.passed and negative.severity == dg.AssetCheckSeverity.ERROR


def _accuracy(mape_promo: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "origin": [date(2026, 9, 1)] * 4 + [date(2026, 10, 1)] * 4,
            "segment": ["stable", "seasonal", "new", "promo"] * 2,
            "mape": [0.5, 0.5, 0.5, 0.5, 0.10, 0.15, 0.20, mape_promo],
        }
    )


def test_mape_drift_uses_the_latest_matured_origin():
    assert drift_check(_accuracy(0.28), SETTINGS).passed  # the old, bad origin no longer counts


def test_mape_drift_warns_beyond_the_margin_and_errors_beyond_twice():
    warn = drift_check(_accuracy(0.30 + SETTINGS.drift_margin + 0.01), SETTINGS)
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN and warn.metadata["segment"].value == "promo"
    error = drift_check(_accuracy(0.30 + SETTINGS.drift_error_margin + 0.01), SETTINGS)
    assert not error.passed and error.severity == dg.AssetCheckSeverity.ERROR
    assert not drift_check(_accuracy(0.31), SETTINGS, margin=0.0).passed  # the configured margin applies
