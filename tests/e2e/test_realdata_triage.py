"""The kit's CLINC150 data through the documented path (realdata/triage.yaml, no user Python), on a thin
slice: the path works end to end; quality is the benchmark's business (bench/realdata_triage.py)."""

import pytest

pytestmark = pytest.mark.e2e


def test_the_kit_slice_runs_through_backfill_schedule_ticks_and_reports(tmp_path):
    from bench.realdata_triage import SLICE_FILTER, run

    result = run(tmp_path / "home", slice=True)
    assert result["slice"] and result["evaluated_months"] == "2025-01"
    # The slice's test month: 8 intents x 30 queries and a tenth of the 1,000 out-of-scope ones.
    assert result["tickets"] == 8 * 30 + 100 and "oos" in SLICE_FILTER
    assert set(result["metrics"]) == set(result["baseline"]) and all(0 <= v <= 1 for v in result["metrics"].values())
    assert result["model"]["gate"] == "PROMOTE" and result["model"]["training_rows"] == 8 * 100 + 10
    assert (tmp_path / "home" / "lake" / "triage" / "ticket_routes" / "month=2025-01" / "data.parquet").exists()
