"""The kit's M5 demand data through the forecasting case's documented path (realdata/forecast.yaml, a
mapping only): the master tables and a multi-store backfill from the dagster CLI, ticks of the weekly
refit and nightly schedules and of the publication sensor. A thin slice: the path, not the figures."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_kit_slice_runs_through_the_documented_path(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench.realdata", "--case", "forecast", "--slice", "--home", str(tmp_path / "home")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout[out.stdout.index("{") :])
    assert result["stores"] == 2 and result["published_vectors"] == 8
    ticks = result["schedule_ticks"]
    assert [r["success"] for r in ticks["weekly_refit"]] == [True] and [r["success"] for r in ticks["nightly"]] == [
        True
    ]
    assert ticks["publication_sensor"] == {"requested": True, "success": True}
    for level in ("item_store", "store", "state"):
        assert 0 < result["ours"][level]["wape"] < 2 and result["ours"][level]["n_points"] > 0
