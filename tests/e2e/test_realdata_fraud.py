"""The kit's card transactions through the fraud case's documented path, on a thin slice: a
mapping file and settings only, a schedule tick, a backfill, training, batch scores and the
evaluation report (quality is the benchmark's business: `python -m bench.realdata --case fraud`);
and the lean mapping (id, time, customer, card, merchant, amount, label; no validation window given)
beside its plain baseline computed in the same run."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _slice(tmp_path, variant: str) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.realdata",
            "--case",
            "fraud",
            "--variant",
            variant,
            "--slice",
            "--home",
            str(tmp_path / "home"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout[out.stdout.index("{") :])


def test_the_kit_slice_goes_through_the_documented_path(tmp_path):
    result = _slice(tmp_path, "kit")
    assert result["days"] == 80 and [r["success"] for r in result["schedule_tick"]["runs"]] == [True]
    assert result["transactions"] > 500 and result["frauds"] > 0 and 0.5 < result["cascade"]["roc_auc"] <= 1
    assert (
        result["evaluation_report"]["window"] == "2020-04-10 .. 2020-04-20"
        and result["evaluation_report"]["layer3_share_pct"] > 0
    )
    gate = result["gate"]  # scores and the report exist whatever the verdict, and the verdict is recorded
    assert gate["version"] == "1" and gate["summary"] and result["scored_in_shadow"] == (not gate["passed"])


def test_the_lean_slice_runs_beside_its_plain_baseline(tmp_path):
    result = _slice(tmp_path, "lean")
    assert result["variant"] == "lean" and result["frauds"] > 0
    assert 0.5 < result["ours"]["roc_auc"] <= 1 and 0.5 < result["baseline"]["roc_auc"] <= 1
    assert isinstance(result["meets_baseline"], bool)
    assert result["training"]["split"].startswith("train 2020-02-02..")  # validation carved from training
