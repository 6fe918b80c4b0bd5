"""The weekly statistical fits on a Dask cluster through fugue give the models the local fit gives."""

import numpy as np
import polars as pl
import pytest

from lakehouse.forecast import world as gen
from lakehouse.forecast.data import CaseData, history, periods_of
from lakehouse.forecast.models import fit_stat_models
from lakehouse.forecast.segmentation import segment_series
from lakehouse.forecast.settings import ForecastSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_dask_engine_fits_the_same_models_as_local():
    from dask.distributed import LocalCluster

    world = gen.WorldConfig(stores=2, skus=8, seed=5)
    tables = gen.master_tables(world)
    sales = pl.concat([gen.store_sales(world, tables, s) for s in tables["stores"]["store_id"]])
    data = CaseData(
        tables["stores"], tables["products"], sales, tables["promotions"], tables["events"], tables["covariates"]
    )
    settings = ForecastSettings()
    periods = periods_of(settings, sales)
    segments = segment_series(data.until(world.last_day), settings, periods)
    hist = history(data)
    ids = {
        "AutoARIMA": segments.filter(pl.col("segment") == "stable"),
        "MSTL": segments.filter(pl.col("segment") == "seasonal"),
    }
    assert all(frame.height for frame in ids.values())
    local, _ = fit_stat_models(hist, ids, settings, periods)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        remote, _ = fit_stat_models(
            hist,
            ids,
            settings.model_copy(
                update={
                    "models": settings.models.model_copy(
                        update={"engine": "dask", "dask_scheduler": cluster.scheduler_address}
                    )
                }
            ),
            periods,
        )
    assert {s: set(m) for s, m in local.items()} == {s: set(m) for s, m in remote.items()}
    recent = hist.group_by("unique_id", maintain_order=True).tail(settings.stat_window_periods)
    for store, models in local.items():
        for uid, model in models.items():
            y = recent.filter(pl.col("unique_id") == uid)["y"].to_numpy().astype(float)
            np.testing.assert_allclose(
                remote[store][uid].forward(y=y, h=14)["mean"], model.forward(y=y, h=14)["mean"], rtol=1e-6
            )
