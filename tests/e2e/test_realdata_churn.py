"""The kit's churn tables go through the documented path (realdata/churn.yaml, a mapping only):
raw tables, staging and a backfill of weekly features, from the dagster CLI. A thin slice."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_kit_tables_load_and_feature_through_the_mapping(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench.realdata", "--case", "churn", "--slice", "--home", str(tmp_path / "home")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout[out.stdout.index("{") :])
    assert result["features"]["weeks"] == 5 and result["features"]["rows"] > 500
