"""The churn feature-drift check: each model input of the scored week against a reference, by its KS statistic
(an effect size) beyond noise."""

import numpy as np
import polars as pl

from lakehouse.churn.model import FEATURES
from lakehouse.churn.monitoring import feature_drift
from lakehouse.churn.settings import ChurnSettings

SETTINGS = ChurnSettings()


def _week(n: int, seed: int, usage: float = 1.0) -> pl.DataFrame:
    """A week of customers' inputs; `usage` scales their usage (0.5: half the minutes, logins and active days)."""
    rng = np.random.default_rng(seed)
    minutes = rng.lognormal(5, 0.6, n) * usage
    csat = rng.integers(1, 6, n).astype(float)
    return pl.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "minutes_28d": minutes,
            "logins_28d": rng.poisson(20 * usage, n),
            "active_days_28d": rng.binomial(28, 0.6 * usage, n),
            "tenure_days": rng.integers(30, 1500, n),
            "mrr": rng.gamma(2, 150, n),
            "tier_rank": rng.integers(0, 3, n),
            "csat_90d": np.where(rng.random(n) < 0.4, np.nan, csat),  # no closed ticket: no CSAT
        }
    ).with_columns(pl.col("csat_90d").fill_nan(None))


INPUTS = ["minutes_28d", "logins_28d", "active_days_28d", "tenure_days", "mrr", "tier_rank", "csat_90d"]


def test_a_feature_whose_distribution_moved_alerts_and_the_others_do_not():
    reference = pl.concat([_week(2_000, seed) for seed in range(4)])
    halved = feature_drift(reference, _week(2_000, 10, usage=0.5), INPUTS, SETTINGS, "four weeks")
    assert not halved.passed and halved.severity == "WARN"
    table = halved.metadata["features"]
    drifted = set(table.filter(pl.col("drifted"))["feature"])
    assert drifted == {"minutes_28d", "logins_28d", "active_days_28d"}
    assert halved.value == table["ks"].max() > SETTINGS.feature_drift.max_ks
    assert halved.metadata["worst_feature"] in drifted and "minutes_28d" in halved.description
    steady = feature_drift(reference, _week(2_000, 11), INPUTS, SETTINGS, "four weeks")
    assert steady.passed and steady.value < SETTINGS.feature_drift.max_ks / 2
    assert steady.metadata["drifted_features"] == "none"


def test_a_change_in_the_share_of_missing_values_counts_as_drift():
    reference = _week(2_000, 1)
    fewer_answers = _week(2_000, 2).with_columns(
        csat_90d=pl.when(pl.int_range(pl.len()) % 10 < 8).then(None).otherwise(pl.col("csat_90d"))
    )
    outcome = feature_drift(reference, fewer_answers, INPUTS, SETTINGS, "last week")
    assert not outcome.passed and outcome.metadata["drifted_features"] == "csat_90d"


def test_a_large_gap_on_a_handful_of_customers_is_noise():
    """On 12 customers a KS of 0.25 is what chance gives: the effect size alone does not alert."""
    reference, week = _week(12, 1), _week(12, 2)
    outcome = feature_drift(reference, week, INPUTS, SETTINGS, "last week")
    table = outcome.metadata["features"]
    assert table["ks"].max() > SETTINGS.feature_drift.max_ks
    assert outcome.passed


def test_nothing_to_compare_passes_and_says_why():
    week = _week(100, 1)
    no_reference = feature_drift(week.head(0), week, FEATURES, SETTINGS, "no week before")
    assert no_reference.passed and no_reference.value is None and "no week before" in no_reference.description
    nobody = feature_drift(week, week.head(0), INPUTS, SETTINGS, "last week")
    assert nobody.passed and "no customer scored" in nobody.description


def test_the_threshold_is_the_settings():
    reference = _week(2_000, 1)
    week = _week(2_000, 2).with_columns(pl.col("minutes_28d") * 0.85)  # a KS of about 0.1 on minutes_28d
    strict = SETTINGS.with_(feature_drift={"max_ks": 0.05, "alpha": 0.001, "reference_weeks": 4})
    assert feature_drift(reference, week, INPUTS, SETTINGS, "x").passed
    assert not feature_drift(reference, week, INPUTS, strict, "x").passed
