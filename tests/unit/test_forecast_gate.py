"""The gate compares like for like: the champion's configuration is refitted at the challenger's cut-off, so both
forecast the same rows out of sample; never the champion's fitted state on rows it was trained on."""

import polars as pl
import pytest

from lakehouse.forecast import world as gen
from lakehouse.forecast.data import CaseData, periods_of
from lakehouse.forecast.evaluation import CHAMPION, ROUTED, Rival, gate_verdict, rolling_forecasts, windows
from lakehouse.forecast.models import configuration
from lakehouse.forecast.settings import LIGHTGBM, SEED_MODELS, SEGMENTS, ForecastSettings

WORLD = gen.WorldConfig(stores=2, skus=8, seed=5, years=1.0)
EVERYWHERE_LIGHTGBM = dict.fromkeys(SEGMENTS, LIGHTGBM)


def lightgbm(trees: int, rate: float) -> dict:
    return {
        "objective": "tweedie",
        "n_estimators": trees,
        "learning_rate": rate,
        "num_leaves": 15,
        "min_child_samples": 10,
        "n_jobs": 1,
        "verbosity": -1,
    }


def settings_with(model: dict) -> ForecastSettings:
    return ForecastSettings(
        models={"lightgbm": model},
        evaluation={"test": "7d", "validation": "7d"},
        gate={"comparison": {"min_support": 10}},  # 16 series
    )


@pytest.fixture(scope="module")
def data() -> CaseData:
    tables = gen.master_tables(WORLD)
    sales = pl.concat([gen.store_sales(WORLD, tables, s) for s in tables["stores"]["store_id"]])
    return CaseData(
        tables["stores"], tables["products"], sales, tables["promotions"], tables["events"], tables["covariates"]
    )


def backtest(data: CaseData, settings: ForecastSettings, champion: Rival):
    periods = periods_of(settings, data.sales)
    logged: list[str] = []
    rows, info = rolling_forecasts(
        data, windows(data, settings)["test"], settings, periods, EVERYWHERE_LIGHTGBM, champion, logged.append
    )
    return rows, info, logged


def test_a_rerun_on_the_same_data_is_judged_like_for_like_and_passes(data):
    """The champion was fitted on the whole history, the window included: its fitted state is never used. Its
    configuration is fitted at the window's first origin with the challenger's, and forecasts what it forecasts."""
    settings = settings_with(lightgbm(30, 0.1))
    champion = Rival("1", EVERYWHERE_LIGHTGBM, configuration(settings))
    rows, info, logged = backtest(data, settings, champion)
    first = info["fits"][0]
    assert info["fits"] == [first] and first < rows["ds"].min(), "one fit, before every scored row"
    assert rows[CHAMPION].null_count() == 0 and rows[CHAMPION].to_list() == rows[ROUTED].to_list()
    assert rows[CHAMPION].to_list() == rows[LIGHTGBM].to_list(), "the same fitted candidates, routed the champion's way"
    assert f"refitted at the challenger's cut-off ({first})" in info["champion_basis"]
    assert not any("champion v1's configuration fitted" in line for line in logged), "no second fit was needed"
    verdict = gate_verdict(rows, "2", "1", "m", settings, info["champion_basis"])
    against = verdict.comparisons_frame().filter(pl.col("against") == "champion v1").row(0, named=True)
    assert verdict.passed and against["gain"] == 0 and against["status"] == "not worse beyond noise"


def test_a_champion_with_other_settings_is_refitted_with_its_own_at_the_same_cut_off(data):
    """A challenger trained with one LightGBM tree against a champion whose settings had sixty: the champion's
    settings are refitted at the challenger's cut-off, and the challenger is refused beyond noise."""
    good, bad = settings_with(lightgbm(60, 0.1)), settings_with(lightgbm(1, 0.01))
    champion = Rival("1", EVERYWHERE_LIGHTGBM, configuration(good))
    rows, info, logged = backtest(data, bad, champion)
    first = info["fits"][0]
    assert f"backtest: champion v1's configuration fitted as of {first}" in logged
    assert "its own settings" in info["champion_basis"]
    verdict = gate_verdict(rows, "2", "1", "m", bad, info["champion_basis"])
    against = verdict.comparisons_frame().filter(pl.col("against") == "champion v1").row(0, named=True)
    assert not verdict.passed and against["status"] == "worse beyond noise" and against["high"] < 0
    assert verdict.summary().startswith("kept v1; v2 refused")


def test_a_champion_routed_to_statistical_models_is_refitted_with_them_at_the_same_cut_off(data):
    """A champion with the seed's routing (AutoARIMA on stable series, MSTL on seasonal ones, LightGBM with sixty
    trees elsewhere) against a one-tree LightGBM everywhere: its statistical models are refitted at the
    challenger's cut-off too, so every sampled row has the champion's forecast, from the model its segment routes
    to, and the challenger is refused beyond noise."""
    good, bad = settings_with(lightgbm(60, 0.1)), settings_with(lightgbm(1, 0.01))
    champion = Rival("1", dict(SEED_MODELS), configuration(good))
    rows, info, logged = backtest(data, bad, champion)
    assert f"backtest: champion v1's configuration fitted as of {info['fits'][0]}" in logged
    assert rows[CHAMPION].null_count() == 0
    for segment, model in (("stable", "AutoARIMA"), ("seasonal", "MSTL")):  # the same statistical settings
        part = rows.filter(pl.col("segment") == segment)
        assert part.height > 0 and part[CHAMPION].to_list() == part[model].to_list(), segment
    promo = rows.filter(pl.col("segment") == "promo")
    assert promo[CHAMPION].to_list() != promo[LIGHTGBM].to_list(), "its own LightGBM settings, not the challenger's"
    verdict = gate_verdict(rows, "2", "1", "m", bad, info["champion_basis"])
    against = verdict.comparisons_frame().filter(pl.col("against") == "champion v1").row(0, named=True)
    assert not verdict.passed and against["status"] == "worse beyond noise" and against["high"] < 0
    assert "champion v1's routing and its own settings refitted" in against["basis"]


def test_shadow_forecasts_never_become_published_vectors():
    from datetime import date

    from lakehouse.forecast.publish import ShadowForecast, vectors

    reconciled = pl.DataFrame(
        {
            "node": ["total/north/s1/a", "total/north/s1/a"],
            "level": ["sku", "sku"],
            "ds": [date(2026, 1, 2), date(2026, 1, 3)],
            "reconciled": [1.0, 2.0],
            "origin": [date(2026, 1, 1)] * 2,
            "model_version": ["3", "3"],
            "shadow": [True, True],
        }
    )
    with pytest.raises(ShadowForecast, match="v3 are in shadow"):
        vectors(reconciled)
    served = vectors(reconciled.with_columns(shadow=pl.lit(False)))
    assert served.row(0, named=True)["model_version"] == "3" and served["forecast"].to_list() == [[1.0, 2.0]]
