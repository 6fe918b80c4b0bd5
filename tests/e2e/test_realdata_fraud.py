"""The kit's card transactions through the fraud case's documented path, on a thin slice: a
mapping file and settings only, a schedule tick, a backfill, training, batch scores and the
evaluation report (quality is the benchmark's business: `bench/realdata_fraud.py`)."""

import json
import os
import subprocess
import sys

import pytest

from bench.realdata_fraud import KIT
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(not KIT.exists(), reason="the real-data kit (../shared/realdata) is not beside the repository")
def test_the_kit_slice_goes_through_the_documented_path(tmp_path):
    out = tmp_path / "result.json"
    code = (
        "import json, pathlib\nfrom bench.realdata_fraud import run\n"
        f"pathlib.Path({str(out)!r}).write_text(json.dumps(run(pathlib.Path({str(tmp_path / 'home')!r}), slice=True)))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")} | {"PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=900)  # a fresh process: the calendar is the kit's
    result = json.loads(out.read_text())
    assert result["days"] == 80 and result["transactions"] > 500 and result["frauds"] > 0
    assert result["gate"] == "passed" and result["evaluation_report"]["window"] == "2020-04-10 .. 2020-04-20"
    assert 0.5 < result["cascade"]["roc_auc"] <= 1 and result["evaluation_report"]["layer3_share_pct"] > 0
    assert result["baseline"]["average_precision"] == pytest.approx(0.963, abs=0.001)
