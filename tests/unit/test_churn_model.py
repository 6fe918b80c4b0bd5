from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from lakehouse.churn.model import OutOfTimeSplit, ScoredBatch, recall_at_top
from lakehouse.churn.pipeline import scoring_checks
from lakehouse.churn.settings import ChurnSettings
from lakehouse.common.drift import ks_statistic, psi

SETTINGS = ChurnSettings()


def test_out_of_time_split_keeps_the_test_period_unseen():
    last = date(2026, 10, 12)
    split = OutOfTimeSplit.from_settings(last - timedelta(weeks=119), last, SETTINGS)
    weeks = pl.DataFrame({"snapshot_date": [last - timedelta(weeks=i) for i in range(120)]})
    train, valid, test = split.frames(weeks)
    horizon = timedelta(days=SETTINGS.label_days)
    assert test["snapshot_date"].min() >= date(2026, 6, 12)  # about 4 months of test snapshots
    assert 16 <= test.height <= 18
    # No label window of a training or validation snapshot reaches the next period.
    assert train["snapshot_date"].max() + horizon <= valid["snapshot_date"].min()
    assert valid["snapshot_date"].max() + horizon <= test["snapshot_date"].min()


def test_recall_at_top_counts_churners_in_each_weekly_top_fifth():
    labels = pl.Series([1, 0, 0, 0, 0, 1, 0, 0, 0, 0] * 2)
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.05, 0.8, 0.2, 0.1, 0.0] * 2)
    weeks = pl.Series(["a"] * 10 + ["b"] * 10)
    # Top 20% = 2 rows per week: first churner ranked 1st, second ranked last.
    assert recall_at_top(labels, scores, weeks, 0.2) == pytest.approx(0.5)


def test_volume_bounds_scale_with_the_customer_base():
    assert SETTINGS.bounds_for(15_000) == (13_000, 16_000)
    assert SETTINGS.bounds_for(1_500) == (1_300, 1_600)


def _batch(n: int, seconds: float = 0.5) -> ScoredBatch:
    return ScoredBatch(pl.DataFrame({"score": np.linspace(0.01, 0.9, n)}), seconds)


def test_weekly_checks_compare_the_volume_with_last_week_unless_a_base_is_set():
    reference = np.linspace(0.01, 0.9, 1_500)
    checks = {c.name: c for c in scoring_checks(_batch(1_000), reference, last_volume=1_500, settings=SETTINGS)}
    assert not checks["prediction_volume"].passed and checks["prediction_volume"].threshold == "[1,300, 1,600]"
    assert checks["score_shift"].passed and checks["scoring_latency"].passed
    first_week = {c.name: c for c in scoring_checks(_batch(1_000), reference, last_volume=None, settings=SETTINGS)}
    assert first_week["prediction_volume"].passed
    based = {
        c.name: c
        for c in scoring_checks(
            _batch(1_000), reference, last_volume=1_000, settings=SETTINGS.with_(customer_base=15_000)
        )
    }
    assert not based["prediction_volume"].passed
    slow = {
        c.name: c for c in scoring_checks(_batch(1_500, seconds=500), reference, last_volume=1_500, settings=SETTINGS)
    }
    assert not slow["scoring_latency"].passed


def test_a_version_without_a_reference_week_is_not_alerted_on_shift():
    (_, shift, _) = scoring_checks(_batch(1_000), None, last_volume=1_000, settings=SETTINGS)
    assert shift.passed and shift.value is None and "no reference week" in shift.description


def test_drift_statistics():
    rng = np.random.default_rng(0)
    a = rng.beta(1, 8, 5000)
    assert ks_statistic(a, rng.beta(1, 8, 5000)) < 0.05
    assert psi(a, rng.beta(1, 8, 5000)) < 0.02
    shifted = rng.beta(2, 4, 5000)
    assert ks_statistic(a, shifted) > 0.15 and psi(a, shifted) > 0.25
