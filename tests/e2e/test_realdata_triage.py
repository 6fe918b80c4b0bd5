"""The kit's CLINC150 data through the documented path (realdata/triage.yaml and its lean variant, no user Python),
on a thin slice: the path works end to end whatever the gate decides; quality is the benchmark's business
(bench/realdata_triage.py)."""

import pytest

pytestmark = pytest.mark.e2e


def test_the_kit_slice_runs_through_the_cli_backfill_schedule_ticks_and_reports(tmp_path):
    from bench.realdata_triage import METRICS, SLICE_FILTER, run

    result = run(tmp_path / "home", slice_=True)
    assert result["slice"] and result["evaluated_months"] == "2025-01" and result["runs"] == 2
    # The slice's test month: 8 intents x 30 queries and a tenth of the 1,000 out-of-scope ones.
    assert result["tickets"] == 8 * 30 + 100 and "oos" in SLICE_FILTER
    assert set(result["baseline"]) == set(METRICS) and set(result["at_least_baseline"]) <= set(METRICS)
    assert all(0 <= v <= 1 for v in result["metrics"].values())
    model = result["model"]
    assert model["gate_verdict"] in ("pass", "refused") and model["training_rows"] == 8 * 100 + 10
    assert model["out_of_scope_rule"] == "on" and result["routed_by"].startswith(f"v{model['model_version']}")
    assert (tmp_path / "home" / "lake" / "triage" / "ticket_routes" / "month=2025-01" / "data.parquet").exists()
    independence = result["batch_independence"]
    assert independence["one_at_a_time"]["category_disagreements"] == 0


def test_the_lean_slice_runs_without_the_out_of_scope_rule_beside_a_baseline_on_the_same_rows(tmp_path):
    from bench.realdata_triage import run_lean

    result = run_lean(tmp_path / "home", slice_=True)
    assert result["variant"] == "lean" and result["tickets"] == 8 * 30
    metrics = result["metrics"]
    assert result["model"]["out_of_scope_rule"] == "off"
    assert metrics["accuracy"] == metrics["accuracy_without_out_of_scope_rule"]
    assert metrics["out_of_scope_recall"] != metrics["out_of_scope_recall"]  # no out-of-scope ticket: NaN
    assert result["baseline_rows"] == {"train": 8 * 100, "test": 8 * 30}
    assert {"accuracy", "macro_f1", "auto_rate", "auto_precision"} <= set(result["baseline"])
    assert isinstance(result["meets_baseline"], bool) and set(result["ours"]) == {
        "accuracy",
        "macro_f1",
        "auto_rate",
        "auto_precision",
    }
