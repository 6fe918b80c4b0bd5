"""ROI maths: the seed's rates give the seed's freed agents and ROI under the configured assumptions."""

import polars as pl
import pytest

from lakehouse.triage.model import AUTO, HUMAN
from lakehouse.triage.roi import compute_roi, report_table
from lakehouse.triage.settings import TriageEconomics

ROI = TriageEconomics()


def _routed(n: int, auto_rate: float, precision: float) -> pl.DataFrame:
    n_auto = round(n * auto_rate)
    n_right = round(n_auto * precision)
    return pl.DataFrame(
        {
            "route": [AUTO] * n_auto + [HUMAN] * (n - n_auto),
            "category": ["a"] * n,
            "agent_category": ["a"] * n_right + ["b"] * (n_auto - n_right) + ["a"] * (n - n_auto),
        }
    )


def test_seed_rates_give_about_the_seed_figures():
    r = compute_roi(_routed(10_000, 0.78, 0.94), decision_seconds=10_000 * 0.005, assumptions=ROI)
    assert r.auto_triage_rate == pytest.approx(0.78) and r.auto_precision == pytest.approx(0.94)
    assert 2.0 <= r.fte_freed <= 2.4  # seed 2.2
    assert 7.0 <= r.roi_multiple <= 9.5  # seed 8x
    assert r.time_to_triage_auto_s == pytest.approx(0.005)
    assert r.roi_multiple == pytest.approx(r.fte_freed * ROI.agent_annual_cost / ROI.system_annual_cost)
    assert "agent_annual_cost" in r.default_figures
    assert report_table(r, [0.85]).row(0) == ("auto-triage rate (confidence > 0.850)", "78.0%", "78%")


def test_the_report_speaks_the_user_currency_and_says_which_figures_are_defaults():
    economics = TriageEconomics(currency="USD", agent_annual_cost=60_000, system_annual_cost=20_000)
    r = compute_roi(_routed(1000, 0.8, 0.95), 1.0, economics)
    assert r.currency == "USD" and r.annual_value == pytest.approx(r.fte_freed * 60_000)
    assert "agent_annual_cost" not in r.default_figures and "tickets_per_month" in r.default_figures
    assert (
        report_table(r, [0.85, 0.9])
        .filter(pl.col("metric") == "annual value of freed time")["measured"]
        .item()
        .endswith(" USD")
    )


def test_no_automation_frees_nothing_useful():
    r = compute_roi(_routed(1000, 0.0, 1.0), 1.0, ROI)
    assert r.auto_triage_rate == 0 and r.fte_freed < ROI.baseline_triage_agents
    with pytest.raises(ValueError):
        compute_roi(_routed(0, 0.5, 1.0).clear(), 1.0, ROI)
