from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from lakehouse.churn.config import SETTINGS
from lakehouse.churn.model import OutOfTimeSplit, recall_at_top
from lakehouse.common.drift import ks_statistic, psi


def test_out_of_time_split_keeps_the_test_period_unseen():
    last = date(2026, 10, 12)
    split = OutOfTimeSplit.from_dates(last, SETTINGS)
    weeks = pl.DataFrame({"snapshot_date": [last - timedelta(weeks=i) for i in range(120)]})
    train, valid, test = split.frames(weeks)
    horizon = timedelta(days=SETTINGS.label_horizon_days)
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
    assert SETTINGS.volume_bounds(15_000) == (13_000, 16_000)
    assert SETTINGS.volume_bounds(1_500) == (1_300, 1_600)


def test_drift_statistics():
    rng = np.random.default_rng(0)
    a = rng.beta(1, 8, 5000)
    assert ks_statistic(a, rng.beta(1, 8, 5000)) < 0.05
    assert psi(a, rng.beta(1, 8, 5000)) < 0.02
    shifted = rng.beta(2, 4, 5000)
    assert ks_statistic(a, shifted) > 0.15 and psi(a, shifted) > 0.25
