"""The fraud gate's comparisons: clustered average precision, the rules-only baseline that needs support, the
champion compared on the same rows, and the verdict they make with the floors."""

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score

from lakehouse.fraud.gate import Clusters, average_precision, gate, versus_champion, versus_rules
from lakehouse.fraud.settings import FraudSettings

SETTINGS = FraudSettings(gate={"comparison": {"resamples": 300}})


def test_the_clustered_average_precision_is_sklearns_with_the_draws_as_weights():
    rng = np.random.default_rng(0)
    y = rng.random(5_000) < 0.02
    score = np.round(rng.random(5_000) + y * rng.random(5_000), 2)  # ties included
    clusters = Clusters(rng.integers(0, 300, 5_000).astype(str))
    statistic = average_precision(y, score, clusters)
    assert statistic(np.arange(clusters.count)) == pytest.approx(average_precision_score(y, score))
    draw = rng.integers(0, clusters.count, clusters.count)
    weights = np.bincount(draw, minlength=clusters.count)[clusters.codes]
    assert statistic(draw) == pytest.approx(average_precision_score(y, score, sample_weight=weights))


def _decided(n: int = 3_000, rule_flags: int = 3, seed: int = 1) -> pl.DataFrame:
    """Test payments: the cascade flags 300 (precision 0.75); the rules flag `rule_flags`, all frauds."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=bool)
    y[:250] = True
    flagged = np.zeros(n, dtype=bool)
    flagged[:225] = True
    flagged[250:325] = True
    rule_score = np.zeros(n)
    rule_score[:rule_flags] = 0.9
    return pl.DataFrame(
        {
            "tx_id": [f"T{i}" for i in range(n)],
            "day": ["2026-11-20"] * n,
            "customer_id": [f"C{c}" for c in rng.integers(0, 400, n)],
            "is_fraud": y,
            "flagged": flagged,
            "rule_score": rule_score,
            "score": np.where(y, 0.6, 0.1) + rng.random(n) * 0.5,
        }
    )


def test_a_rules_baseline_from_a_handful_of_flags_does_not_decide():
    """Rules-only precision 1.0 from 3 flagged payments against the cascade's 0.75 from 300: not decisive, so
    the cascade passes on its floors; with the rules flagging 60 payments at 1.0 the comparison decides."""
    recall, precision = versus_rules(_decided(rule_flags=3), SETTINGS)
    assert precision.other == 1.0 and precision.challenger == pytest.approx(0.75)
    assert precision.support == 3 and not precision.decisive and not precision.worse
    assert precision.status.startswith("not decisive: 3 flagged payments (needs 30)")
    assert recall.decisive and not recall.worse  # 0.9 of the frauds against 3 of 250
    verdict = gate({"recall": 0.9, "precision": 0.75}, "2", None, SETTINGS, [recall, precision])
    assert verdict.passed and "not decisive" in verdict.summary()
    frame = verdict.comparisons_frame()
    assert frame["low"][1] is not None and frame["low"][1] < frame["high"][1]  # the interval is shown anyway
    _, decisive = versus_rules(_decided(rule_flags=60), SETTINGS)
    assert decisive.decisive and decisive.worse
    assert not gate({"recall": 0.9, "precision": 0.75}, "2", None, SETTINGS, [decisive]).passed


def test_the_champion_comparison_refuses_only_a_challenger_worse_beyond_noise():
    rows = _decided()
    y = rows["is_fraud"].to_numpy()
    rng = np.random.default_rng(3)
    champion = rows.with_columns(score=pl.Series(np.where(y, 0.9, 0.1) + rng.random(rows.height) * 0.3))
    worse = rows.with_columns(score=pl.Series(rng.random(rows.height) + 0.3 * y))
    comparison = versus_champion(worse, champion, "3", SETTINGS, "2026-11-19")
    assert comparison.against == "champion v3" and comparison.metric == "average precision"
    assert comparison.worse and comparison.interval[1] < 0 and comparison.support == 250
    verdict = gate({"recall": 0.9, "precision": 0.75}, "4", "3", SETTINGS, [comparison])
    assert not verdict.passed and verdict.summary().startswith("kept v3; v4 refused")
    same = versus_champion(champion, champion, "3", SETTINGS, "2026-11-19")
    assert not same.worse and same.gain == 0.0
    few = versus_champion(worse.slice(230, 400), champion.slice(230, 400), "3", SETTINGS, "2026-11-19")
    assert not few.decisive and not few.worse  # 20 frauds: fewer than min_support
