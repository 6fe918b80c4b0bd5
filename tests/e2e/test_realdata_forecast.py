"""The M5 kit's thin slice through the forecasting case's documented path: a mapping file only, a fresh
home, the code location's jobs, a schedule tick, a sensor tick and a multi-store backfill (the path, not
the figures)."""

import pytest

pytestmark = pytest.mark.e2e


def test_the_kit_slice_runs_through_the_documented_path(tmp_path):
    from bench.realdata_forecast import run

    result = run(tmp_path / "home", slice=True)
    assert result["stores"] == 2 and result["published_vectors"] == 8
    assert set(result["run_wall_s"]) == {"forecast_master_refresh", "forecast_weekly_refit", "forecast_nightly", "forecast_nightly_publish"}
    for level in ("item_store", "store", "state"):
        assert 0 < result["ours"][level]["wape"] < 2 and result["ours"][level]["n_points"] > 0
    assert result["kit_baselines"]["lightgbm_mlforecast"]["item_store"]["wape"] == pytest.approx(0.4208, abs=1e-4)
