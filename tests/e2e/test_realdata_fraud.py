"""The kit's card transactions through the fraud case's documented path, on a thin slice: a
mapping file and settings only, a schedule tick, a backfill, training, batch scores and the
evaluation report (quality is the benchmark's business: `python -m bench.realdata --case fraud`)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_kit_slice_goes_through_the_documented_path(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench.realdata", "--case", "fraud", "--slice", "--home", str(tmp_path / "home")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout[out.stdout.index("{") :])
    assert result["days"] == 80 and [r["success"] for r in result["schedule_tick"]["runs"]] == [True]
    assert result["transactions"] > 500 and result["frauds"] > 0 and 0.5 < result["cascade"]["roc_auc"] <= 1
    assert (
        result["evaluation_report"]["window"] == "2020-04-10 .. 2020-04-20"
        and result["evaluation_report"]["layer3_share_pct"] > 0
    )
