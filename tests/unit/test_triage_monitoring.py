"""Each monitoring check passes on a healthy month and fails on a month broken on purpose."""

import numpy as np
import polars as pl

from lakehouse.triage.model import route
from lakehouse.triage.monitoring import (
    category_recall_check,
    confusion,
    human_validation_rate_check,
    mean_confidence_check,
    mix_drift_check,
    per_category,
)
from lakehouse.triage.settings import MonitoringSettings

SETTINGS = MonitoringSettings()
CATS = [f"cat_{i}" for i in range(12)]
REFERENCE = {c: 1 / 12 for c in CATS}


def _routes(confidence: np.ndarray) -> pl.DataFrame:
    return route(pl.DataFrame({"confidence": confidence, "out_of_scope": False}), 0.85)


def test_mean_confidence_alerts_below_0_75():
    rng = np.random.default_rng(0)
    assert mean_confidence_check(_routes(rng.uniform(0.85, 1.0, 500)), SETTINGS).passed
    failed = mean_confidence_check(_routes(rng.uniform(0.4, 0.9, 500)), SETTINGS)
    assert not failed.passed and failed.value < 0.75 and failed.threshold == ">= 0.75"


def test_the_seed_alert_limits_are_settings():
    strict = MonitoringSettings(min_mean_confidence=0.95, max_human_validation_rate=0.5)
    assert not mean_confidence_check(_routes(np.full(10, 0.9)), strict).passed
    assert human_validation_rate_check(_routes(np.r_[np.full(60, 0.95), np.full(40, 0.5)]), strict).passed


def test_human_validation_rate_alerts_above_30_percent():
    healthy = np.r_[np.full(80, 0.95), np.full(20, 0.5)]
    assert human_validation_rate_check(_routes(healthy), SETTINGS).passed
    failed = human_validation_rate_check(_routes(np.r_[np.full(60, 0.95), np.full(40, 0.5)]), SETTINGS)
    assert not failed.passed and failed.value == 0.4


def test_category_mix_drift_alerts_when_one_category_takes_over():
    rng = np.random.default_rng(1)
    same = pl.Series("category", rng.choice(CATS, 2000))
    assert mix_drift_check(same, REFERENCE, SETTINGS).passed
    drifted = pl.Series("category", np.r_[np.full(1000, "cat_0"), rng.choice(CATS, 1000)])
    failed = mix_drift_check(drifted, REFERENCE, SETTINGS)
    assert not failed.passed and failed.value > SETTINGS.max_mix_psi
    assert failed.metadata["chi_square_p_value"] < 1e-6
    # A category the model never saw in training counts as drift too.
    unseen = pl.Series("category", np.r_[np.full(500, "brand_new"), rng.choice(CATS, 1500)])
    assert not mix_drift_check(unseen, REFERENCE, SETTINGS).passed


def test_confusion_matrix_and_the_recall_check_per_category():
    rng = np.random.default_rng(2)
    true = rng.choice(CATS, 2400)
    good = np.where(rng.random(2400) < 0.95, true, rng.choice(CATS, 2400))
    cats, matrix = confusion(pl.Series(true), pl.Series(good))
    assert matrix.sum() == 2400 and cats == sorted(CATS)
    assert category_recall_check(per_category(cats, matrix), SETTINGS).passed
    # cat_3 is systematically confused with cat_4: its recall collapses.
    broken = np.where(true == "cat_3", "cat_4", good)
    stats = per_category(*confusion(pl.Series(true), pl.Series(broken)))
    failed = category_recall_check(stats, SETTINGS)
    assert not failed.passed and failed.metadata["worst_category"] == "cat_3" and failed.value == 0.0
    assert stats.filter(pl.col("category") == "cat_4")["precision"].item() < 0.6
