"""The churn usage-volume check: the raw usage of the week before the snapshot (active customer-days) against the
weeks before it, alerting under a ratio of their mean (an effect size) and beyond chance (exact Poisson test)."""

from datetime import date, timedelta

import numpy as np
import polars as pl

from lakehouse.churn.monitoring import usage_volume
from lakehouse.churn.settings import ChurnSettings

SETTINGS = ChurnSettings()
SNAPSHOT = date(2024, 10, 21)  # a Monday: the week checked is 10-14 .. 10-20
FIRST_WEEK = date(2024, 1, 1)  # the data's first (partial) week


def _weeks(counts: list[int], snapshot: date = SNAPSHOT) -> pl.DataFrame:
    """Weekly usage, the last count the week before `snapshot`: customers and logins follow the customer-days."""
    last = snapshot - timedelta(weeks=1)
    return pl.DataFrame(
        {
            "week_start": [last - timedelta(weeks=len(counts) - 1 - i) for i in range(len(counts))],
            "active_days": counts,
            "customers": [round(c * 0.8) for c in counts],
            "logins": [round(c * 1.04) for c in counts],
        }
    )


def _steady(rng, mean: float, weeks: int = 9) -> list[int]:
    return [int(c) for c in rng.poisson(mean, weeks)]


def test_a_halved_week_alerts_with_its_figures():
    rng = np.random.default_rng(1)
    counts = [*_steady(rng, 230, 8), 115]
    outcome = usage_volume(_weeks(counts), SNAPSHOT, FIRST_WEEK, SETTINGS)
    assert not outcome.passed and outcome.severity == "WARN"
    assert 0.45 < outcome.value < 0.55 and outcome.metadata["p_value"] < 1e-10
    assert outcome.metadata["week"] == "2024-10-14..2024-10-20" and outcome.metadata["active_days"] == 115
    assert outcome.metadata["trailing_weeks"] == 8
    assert outcome.metadata["expected_active_days"] == round(sum(counts[:8]) / 8, 1)
    assert outcome.metadata["customers_with_usage"] == 92 and outcome.threshold.startswith(">= 0.7 x")
    assert "115 active customer-days" in outcome.description


def test_steady_weeks_and_a_visible_dip_do_not_alert():
    """Poisson noise around 230 customer-days (the kit's volume) never alerts over 500 weeks, nor does a week at
    0.8 x (a holiday): the ratio floor holds it although that is beyond chance."""
    rng = np.random.default_rng(2)
    outcomes = [usage_volume(_weeks(_steady(rng, 230)), SNAPSHOT, FIRST_WEEK, SETTINGS) for _ in range(500)]
    assert all(o.passed for o in outcomes)
    assert min(o.value for o in outcomes) > 0.8
    holiday = usage_volume(_weeks([*[230] * 8, 184]), SNAPSHOT, FIRST_WEEK, SETTINGS)
    assert holiday.passed and holiday.value == 0.8 and holiday.metadata["p_value"] < 0.01


def test_a_small_base_does_not_alert_on_chance():
    """A handful of customers: a week at a fifth, or even none, of 5 customer-days a week is what chance gives."""
    for week in (0, 1):
        outcome = usage_volume(_weeks([5, 4, 6, 5, 5, 6, 4, 5, week]), SNAPSHOT, FIRST_WEEK, SETTINGS)
        assert outcome.passed and outcome.value < SETTINGS.usage_volume.min_ratio
        assert outcome.metadata["p_value"] > SETTINGS.usage_volume.alpha
        assert "within chance" in outcome.description
    # 40 a week and none this week is not chance
    assert not usage_volume(_weeks([40] * 8 + [0]), SNAPSHOT, FIRST_WEEK, SETTINGS).passed


def test_a_week_without_rows_counts_as_none():
    weeks = _weeks([230] * 9).filter(pl.col("week_start") != SNAPSHOT - timedelta(weeks=1))
    outcome = usage_volume(weeks, SNAPSHOT, FIRST_WEEK, SETTINGS)
    assert not outcome.passed and outcome.value == 0 and outcome.metadata["active_days"] == 0


def test_the_data_start_and_weeks_before_it_are_left_out():
    """The data's first week is partial: it is not a trailing week, and with fewer than `min_weeks` complete weeks
    the check has nothing to compare."""
    counts = [30, 230, 230, 230, 230, 230, 230, 230, 150]  # first week: a Sunday only
    first = SNAPSHOT - timedelta(weeks=9)
    with_start = usage_volume(_weeks(counts), SNAPSHOT, first, SETTINGS)
    assert with_start.metadata["trailing_weeks"] == 7 and with_start.metadata["expected_active_days"] == 230
    young = usage_volume(_weeks(counts[-5:]), SNAPSHOT, SNAPSHOT - timedelta(weeks=5), SETTINGS)
    assert young.passed and young.value is None and "3 complete week(s)" in young.description
    nothing = usage_volume(_weeks([]), SNAPSHOT, None, SETTINGS)
    assert nothing.passed and "no usage recorded" in nothing.description


def test_the_threshold_is_the_settings():
    week = _weeks([230] * 8 + [184])  # 0.8 x, binomial p 0.002
    strict = SETTINGS.with_(usage_volume={"min_ratio": 0.85, "alpha": 0.01})
    assert usage_volume(week, SNAPSHOT, FIRST_WEEK, SETTINGS).passed
    assert not usage_volume(week, SNAPSHOT, FIRST_WEEK, strict).passed
    assert SETTINGS.with_(usage_volume={"trailing_weeks": 4}).usage_volume.alpha == SETTINGS.usage_volume.alpha
