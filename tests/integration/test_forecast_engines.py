"""The Dask engine (`models.engine: dask`) on a LocalCluster gives the local engine's forecasts: the statistical fits
through fugue (AutoARIMA's searched orders and kept ones alike) and the nightly stores fanned out exactly; LightGBM
through mlforecast's distributed API exactly on one worker, and within the stated tolerance on several
(data-parallel training grows slightly different trees)."""

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from lakehouse.common.promotion import ModelChoice
from lakehouse.forecast import world as gen
from lakehouse.forecast.data import CaseData, history, periods_of
from lakehouse.forecast.models import FittedModels, configuration, fit_models, fit_stat_models, forecast_candidates
from lakehouse.forecast.pipeline import nightly_forecast
from lakehouse.forecast.segmentation import segment_series
from lakehouse.forecast.settings import ForecastSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORLD = gen.WorldConfig(stores=2, skus=12, seed=5)
LIGHTGBM = {**ForecastSettings().models.lightgbm, "n_estimators": 60}
GLOBAL = {"stable": "LightGBM", "seasonal": "LightGBM", "new": "LightGBM", "promo": "LightGBM"}
# Several workers: the relative L1 distance between the two engines' forecasts, and the change of the WAPE against
# the actuals, at most (measured on this world: 0.016 and 0.0002 with 2 workers, 0.021 and 0.005 with 3).
TOLERANCE = {"distance": 0.05, "wape": 0.01}


@pytest.fixture(scope="module")
def data() -> CaseData:
    tables = gen.master_tables(WORLD)
    sales = pl.concat([gen.store_sales(WORLD, tables, s) for s in tables["stores"]["store_id"]])
    return CaseData(
        tables["stores"], tables["products"], sales, tables["promotions"], tables["events"], tables["covariates"]
    )


def _on(settings: ForecastSettings, scheduler: str) -> ForecastSettings:
    return settings.with_(models={**settings.models.model_dump(), "engine": "dask", "dask_scheduler": scheduler})


def _cluster(workers: int):
    from dask.distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None)


def test_dask_engine_fits_the_same_statistical_models_as_local(data):
    settings = ForecastSettings()
    periods = periods_of(settings, data.sales)
    segments = segment_series(data.until(WORLD.last_day), settings, periods)
    hist = history(data)
    ids = {
        "AutoARIMA": segments.filter(pl.col("segment") == "stable"),
        "MSTL": segments.filter(pl.col("segment") == "seasonal"),
    }
    assert all(frame.height for frame in ids.values())
    # A first fit searching every AutoARIMA order, then next week's keeping the orders not due for a search.
    first, week = WORLD.last_day - timedelta(days=7), WORLD.last_day
    local, _ = fit_stat_models(hist, ids, settings, periods, as_of=first)
    previous = FittedModels(first, periods, segments, {}, local, None, {}, [], config=configuration(settings))
    local_week, _ = fit_stat_models(hist, ids, settings, periods, as_of=week, previous=previous)
    with _cluster(2) as cluster:
        remote, _ = fit_stat_models(hist, ids, _on(settings, cluster.scheduler_address), periods, as_of=first)
        remote_week, _ = fit_stat_models(
            hist, ids, _on(settings, cluster.scheduler_address), periods, as_of=week, previous=previous
        )
    assert any(type(m).__name__ == "ARIMA" for models in local_week.values() for m in models.values())
    recent = hist.group_by("unique_id", maintain_order=True).tail(settings.stat_window_periods)
    for mine, theirs in ((local, remote), (local_week, remote_week)):
        assert {s: set(m) for s, m in mine.items()} == {s: set(m) for s, m in theirs.items()}
        for store, models in mine.items():
            for uid, model in models.items():
                assert type(theirs[store][uid]) is type(model)
                y = recent.filter(pl.col("unique_id") == uid)["y"].to_numpy().astype(float)
                np.testing.assert_allclose(
                    theirs[store][uid].forward(y=y, h=14)["mean"], model.forward(y=y, h=14)["mean"], rtol=1e-6
                )


def _forecasts(data: CaseData, settings: ForecastSettings, as_of) -> pl.DataFrame:
    periods = periods_of(settings, data.sales)
    fitted = fit_models(data.until(as_of), settings, periods, routing=GLOBAL)
    return forecast_candidates(fitted, data, as_of, settings.horizon_periods, settings)


def test_lightgbm_on_dask_gives_the_local_forecasts(data):
    settings = ForecastSettings(models={"lightgbm": LIGHTGBM})
    as_of = WORLD.last_day - timedelta(days=14)
    local = _forecasts(data, settings, as_of)
    with _cluster(1) as cluster:
        one = _forecasts(data, _on(settings, cluster.scheduler_address), as_of)
    assert one.select("unique_id", "step", "yhat").equals(local.select("unique_id", "step", "yhat"))
    with _cluster(2) as cluster:
        two = _forecasts(data, _on(settings, cluster.scheduler_address), as_of)
    actual = data.sales.select(
        pl.concat_str("store_id", pl.lit("/"), "sku_id").alias("unique_id"), pl.col("date").alias("ds"), "units"
    )
    both = local.join(two, on=["unique_id", "step"], suffix="_dask").join(actual, on=["unique_id", "ds"])
    assert both.height == local.height == two.height > 0
    distance = (both["yhat_dask"] - both["yhat"]).abs().sum() / both["yhat"].abs().sum()
    wape = [(both[c] - both["units"]).abs().sum() / both["units"].abs().sum() for c in ("yhat", "yhat_dask")]
    assert 0 < distance <= TOLERANCE["distance"], distance
    assert abs(wape[1] - wape[0]) <= TOLERANCE["wape"], wape


def test_the_nightly_stores_fanned_out_on_dask_give_the_local_forecasts(data):
    settings = ForecastSettings(models={"lightgbm": LIGHTGBM, "selection": "seed"})
    periods = periods_of(settings, data.sales)
    as_of = WORLD.last_day - timedelta(days=14)
    fitted = fit_models(data.until(as_of), settings, periods)
    assert fitted.stat, "the seed's routing fits statistical models"
    choice = ModelChoice("1", "champion", shadow=False)
    local, _ = nightly_forecast(data, fitted, choice, as_of, settings)
    with _cluster(2) as cluster:
        remote, outcomes = nightly_forecast(data, fitted, choice, as_of, _on(settings, cluster.scheduler_address))
    assert local["store_id"].n_unique() == 2 and all(o.passed for o in outcomes)
    assert remote.equals(local)
