"""The kit's M5 demand data through the forecasting case's documented path (realdata/forecast.yaml, a
mapping only): the master tables and a multi-store backfill from the dagster CLI, ticks of the weekly
refit and nightly schedules and of the publication sensor; and its lean variant (weekly rows summed by
the mapping, the hierarchy only) beside its baselines computed in the same run. Thin slices: the path,
not the figures."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _run(home, *variant) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.realdata", "--case", "forecast", *variant, "--slice", "--home", str(home)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout[out.stdout.index("{") :])


def _green_path(result: dict) -> None:
    ticks = result["schedule_ticks"]
    assert [r["success"] for r in ticks["weekly_refit"]] == [True], "a refused challenger is not a failed run"
    assert [r["success"] for r in ticks["nightly"]] == [True]
    assert ticks["publication_sensor"]["requested"] and ticks["publication_sensor"]["success"]
    life = result["lifecycle"]
    assert life["verdict"] and life["gate_passed"] in (True, False)
    # Tonight's forecasts come from the champion, or from the refused challenger in shadow, never published.
    assert life["nightly_in_shadow"] is (life["champion_version"] == "none")
    assert ticks["publication_sensor"]["published"] is not life["nightly_in_shadow"]
    assert (result["published_vectors"] > 0) is not life["nightly_in_shadow"]


def test_the_kit_slice_runs_through_the_documented_path(tmp_path):
    result = _run(tmp_path / "home", "--variant", "kit")
    assert result["stores"] == 2
    _green_path(result)
    for level in ("item_store", "store", "state"):
        assert 0 < result["ours"][level]["wape"] < 2 and result["ours"][level]["n_points"] > 0


def test_the_lean_slice_runs_with_its_baselines_on_the_same_rows(tmp_path):
    result = _run(tmp_path / "home", "--variant", "lean")
    _green_path(result)
    for protocol in ("one_origin", "rolled_w1"):
        ours = result["ours"][protocol]["item_store"]
        for baseline in ("seasonal_naive", "lightgbm"):
            theirs = result["baseline"][protocol][baseline]["item_store"]
            assert theirs["n_points"] == ours["n_points"] > 0, "the baselines are scored on our rows"
    assert result["ours"]["one_origin"]["item_store"]["n_points"] == 8 * 26
    assert isinstance(result["meets_baseline"], bool)
