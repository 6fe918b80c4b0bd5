"""Rules, cascade, gate and the monitoring checks (each made to fail)."""

import json

import numpy as np
import polars as pl
import pytest

from lakehouse.fraud.config import SETTINGS, WorldConfig
from lakehouse.fraud.features import batch_features
from lakehouse.fraud.model import DaySplit, evaluate_test, passes_gate, train
from lakehouse.fraud.monitoring import decision_rate, feature_drift, layer3_share
from lakehouse.fraud.rules import RuleLists, build_lists, rule_hits, rule_score
from lakehouse.fraud.world import generate_days

WORLD = WorldConfig(tx_per_day=5000, days=8, seed=8)


def _evaluate(world: WorldConfig):
    tx = generate_days(world)
    from lakehouse.fraud.rules import batch_rules

    split = DaySplit.from_days(world.day_keys, SETTINGS)
    features = batch_features(tx)
    lists = build_lists(split.frame(tx, "train"), SETTINGS)
    data = features.join(batch_rules(features, tx, lists, SETTINGS), on="tx_id")
    cascade = train(data, split, SETTINGS)
    evaluation = evaluate_test(cascade, data, split, SETTINGS)
    return cascade, evaluation, lists, tx


@pytest.fixture(scope="module")
def evaluated():
    return _evaluate(WORLD)


def _metrics(evaluation) -> dict:
    return {**evaluation.cascade, **{f"baseline_{k}": v for k, v in evaluation.baseline.items()}}


def test_cascade_beats_the_rules_and_passes_the_gate(evaluated):
    cascade, evaluation, _, _ = evaluated
    m = _metrics(evaluation)
    assert passes_gate(m, SETTINGS)
    assert m["recall"] > m["baseline_recall"] and m["precision"] > m["baseline_precision"]
    assert 0 < cascade.review_threshold <= cascade.block_threshold <= 1
    assert set(evaluation.test_decisions["layer"].unique()) <= {1, 2, 3}
    assert m["fraud_eur_caught_per_month"] <= m["fraud_eur_per_month"]


def test_gate_refuses_a_model_without_signal_and_one_below_the_rules():
    _, evaluation, _, _ = _evaluate(WORLD.with_(signal_strength=0.0))
    assert not passes_gate(_metrics(evaluation), SETTINGS)
    worse = {"recall": 0.9, "precision": 0.6, "baseline_recall": 0.95, "baseline_precision": 0.5}
    assert not passes_gate(worse, SETTINGS)
    assert passes_gate({**worse, "baseline_recall": 0.8}, SETTINGS)


def test_lists_come_from_labelled_fraud_and_rules_block_on_them(evaluated):
    _, _, lists, tx = evaluated
    mules = set(tx.filter(pl.col("fraud_pattern") == "account_takeover")["payee_iban"].to_list())
    assert lists.ibans and lists.ibans <= mules
    transfer = {"channel": "transfer", "payee_iban": next(iter(lists.ibans)), "amount_eur": 900.0}
    hits = rule_hits(transfer, {}, lists, SETTINGS)
    assert hits == ["fraudulent_iban"] and rule_score(hits) >= SETTINGS.rule_block_threshold
    card = {"channel": "ecommerce", "amount_eur": 2.0}
    assert "card_testing" in rule_hits(card, {"card_small_5m": 2.0}, RuleLists(), SETTINGS)
    assert rule_hits(card, {"card_small_5m": 0.0}, RuleLists(), SETTINGS) == []


def _log(n: int, decisions=("approve",), layer: int = 2, features=None) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    feats = features if features is not None else [{"amount_eur": float(a)} for a in rng.lognormal(3.5, 0.8, n)]
    return pl.DataFrame(
        {
            "decision": [decisions[i % len(decisions)] for i in range(n)],
            "layer": [layer] * n,
            "degraded": [False] * n,
            "features": [json.dumps(f) for f in feats],
        }
    )


def test_monitoring_checks_pass_on_a_normal_day_and_fail_when_broken():
    rng = np.random.default_rng(1)
    reference = pl.DataFrame({"amount_eur": rng.lognormal(3.5, 0.8, 2000)})
    normal = _log(1000, decisions=("approve",) * 98 + ("review", "block"))
    assert feature_drift(reference, normal, SETTINGS).passed
    assert decision_rate(normal, 0.02, SETTINGS).passed
    assert layer3_share(normal.with_columns(layer=pl.Series([3] * 20 + [2] * 980)), SETTINGS).passed

    shifted = _log(1000, features=[{"amount_eur": float(a)} for a in rng.lognormal(5.0, 0.8, 1000)])
    drift = feature_drift(reference, shifted, SETTINGS)
    assert not drift.passed and drift.metadata["worst_feature"] == "amount_eur" and drift.metadata["value"] > SETTINGS.max_feature_drift_ks
    assert not layer3_share(normal.with_columns(layer=pl.lit(3)), SETTINGS).passed  # everything escalated
    assert not layer3_share(normal, SETTINGS).passed  # nothing escalated
    blocking_storm = _log(1000, decisions=("block", "approve"))
    assert not decision_rate(blocking_storm, 0.02, SETTINGS).passed
    assert not decision_rate(_log(1000), 0.02, SETTINGS).passed  # nothing flagged at all
