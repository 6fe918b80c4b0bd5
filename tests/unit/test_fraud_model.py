"""Rules, cascade, calibration, band, thresholds, gate and the monitoring checks (each made to fail)."""

import json
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from lakehouse.fraud.features_batch import batch_features
from lakehouse.fraud.features_registry import registry_for
from lakehouse.fraud.gate import gate
from lakehouse.fraud.model import choose_band, choose_threshold, evaluate, score_rows, train
from lakehouse.fraud.monitoring import decision_rate, feature_drift, layer3_share
from lakehouse.fraud.pipeline import split_of, with_rules
from lakehouse.fraud.rules import RuleLists, build_lists, rule_hits, rule_score
from lakehouse.fraud.settings import FraudSettings
from lakehouse.fraud.world import WorldConfig, generate_days

pytestmark = pytest.mark.slow  # trains three cascades
SETTINGS = FraudSettings()
REGISTRY = registry_for(SETTINGS)
WORLD = WorldConfig(tx_per_day=5000, days=8, seed=8)


def _evaluate(tx: pl.DataFrame, settings: FraudSettings = SETTINGS):
    registry = registry_for(settings)
    features = batch_features(tx, registry)
    split = split_of([str(d) for d in features["day"].unique().to_list()], settings)
    train_rows = split.frame(features, "train")
    lists = build_lists(tx.filter(pl.col("tx_id").is_in(train_rows["tx_id"].implode())), train_rows, registry, settings)
    data = with_rules(features, tx, lists, registry, settings)
    cascade = train(data, split, registry, settings, lists)
    evaluation = evaluate(score_rows(cascade, split.frame(data, "test"), True), cascade, split.test.days, settings)
    return cascade, evaluation, lists, data, split


@pytest.fixture(scope="module")
def world_tx():
    return generate_days(WORLD)


@pytest.fixture(scope="module")
def evaluated(world_tx):
    return _evaluate(world_tx)


def test_cascade_beats_the_rules_passes_the_gate_and_reports_its_layers(evaluated):
    cascade, evaluation, _, data, split = evaluated
    m = evaluation.metrics()
    outcome = gate(m, "7", None, SETTINGS).outcome()
    assert (
        outcome.passed
        and outcome.severity == "WARN"
        and outcome.value == round(m["recall"], 4)
        and "recall >=" in outcome.threshold
    )
    assert m["recall"] > m["baseline_recall"] and m["precision"] > m["baseline_precision"]
    assert 0 < cascade.review_threshold <= cascade.block_threshold <= 1
    assert m["roc_auc"] > 0.99 and m["average_precision"] > 0.9
    # layer 3 sees a share of traffic chosen on validation within the budget, and its lift is reported
    search = cascade.band_search
    assert search["chosen_share"] <= SETTINGS.cascade.layer3_max_share
    assert search["validation_frauds_below_band"] <= search["validation_frauds"]
    assert 0.05 < m["layer3_share"] < 0.5 and m["layer3_fraud_share"] > 0.5
    assert m["layer3_lift_average_precision"] == pytest.approx(
        m["average_precision"] - m["layer2_only_average_precision"]
    )
    assert 0 < m["card_precision_at_k"] <= 1 and m["frauds_below_band"] >= 0
    assert m["fraud_caught_per_month"] <= m["fraud_per_month"]


def test_one_calibrated_probability_for_every_payment_whichever_layer_decided(evaluated):
    """Each layer is calibrated on validation, so the payments layer 3 re-scored and those layer 2 decided are
    on one probability scale: expected frauds match the frauds of the test days, and the final score ranks
    them at least as well as the same cascade mixing the two layers' raw scores. (Against each layer alone:
    the e2e graph test, on the demo world.)"""
    from lakehouse.fraud.model import ranking_metrics

    cascade, evaluation, _, data, split = evaluated
    m = evaluation.metrics()
    assert all(a > 0 for a, _ in cascade.calibration.values())  # monotone: each layer keeps its ranking
    rows = evaluation.decisions.filter(pl.col("layer") != 1)
    assert float(rows["score"].sum()) == pytest.approx(float(rows["is_fraud"].sum()), rel=0.35)
    test = split.frame(data, "test")
    layer = evaluation.decisions["layer"].to_numpy()
    raw2 = cascade.layer2.booster.predict(test.select(cascade.layer2_features).to_numpy())
    raw3 = cascade.layer3.booster.inplace_predict(test.select(cascade.layer3_features).to_numpy())
    mixed = np.where(layer == 1, 1.0, np.where(layer == 3, raw3, raw2))
    y = evaluation.decisions["is_fraud"].to_numpy()
    assert m["average_precision"] >= ranking_metrics(y, mixed)["average_precision"]
    assert m["average_precision"] >= min(m["layer2_only_average_precision"], m["layer3_only_average_precision"])


def test_gate_refuses_a_model_without_signal_and_one_below_its_floors():
    _, evaluation, _, _, _ = _evaluate(generate_days(WORLD.with_(tx_per_day=2500, signal_strength=0.0)))
    assert not gate(evaluation.metrics(), "1", None, SETTINGS).passed
    good = {"recall": 0.9, "precision": 0.6}
    assert gate(good, "3", None, SETTINGS).passed
    assert not gate(good, "4", None, SETTINGS.with_(gate={"min_recall": 0.95})).passed


def test_lists_come_from_labelled_fraud_and_rules_block_on_them(evaluated, world_tx):
    _, _, lists, _, _ = evaluated
    mules = set(world_tx.filter(pl.col("fraud_pattern") == "account_takeover")["payee_iban"].to_list())
    assert lists.ibans and lists.ibans <= mules
    transfer = {"channel": "transfer", "payee_iban": next(iter(lists.ibans)), "amount": 900.0}
    hits = rule_hits(transfer, {}, lists, REGISTRY, SETTINGS)
    assert hits == ["fraudulent_iban"] and rule_score(hits, lists, SETTINGS) >= SETTINGS.rules.block_threshold
    card = {"channel": "ecommerce", "amount": 2.0}
    assert "card_testing" in rule_hits(card, {"card_small_5m": 2.0}, RuleLists(), REGISTRY, SETTINGS)
    assert rule_hits(card, {"card_small_5m": 0.0}, RuleLists(), REGISTRY, SETTINGS) == []
    assert RuleLists.from_frame(lists.as_frame()) == lists


def test_the_risky_merchant_rule_is_learnt_from_known_fraud_rates():
    """A terminal compromised for weeks: its known fraud rate crosses a learnt threshold, and
    the rule's weight is the precision measured on the training payments."""
    start = datetime(2026, 1, 1, 10)
    rows = []
    for d in range(40):
        for m in range(20):
            bad = m == 0 and d >= 5
            rows.append(
                {
                    "tx_id": f"T{d}-{m}",
                    "ts": start + timedelta(days=d, minutes=m),
                    "customer_id": f"C{d}-{m}",
                    "card_id": f"K{d}-{m}",
                    "merchant_id": f"M{m}",
                    "channel": "card_present",
                    "amount": 50.0,
                    "is_fraud": bad or (m == 7 and d == 20),
                }
            )
    tx = pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("ms")))
    features = batch_features(tx, REGISTRY)
    lists = build_lists(tx, features, REGISTRY, SETTINGS)
    assert 0 < lists.thresholds["risky_merchant_rate"] <= 1 and lists.thresholds["risky_merchant_weight"] >= 0.9
    late = features.filter((pl.col("merchant_id") == "M0") & (pl.col("day") > pl.date(2026, 1, 25))).row(0, named=True)
    hits = rule_hits({"channel": "card_present", "amount": 50.0}, late, lists, REGISTRY, SETTINGS)
    assert hits == ["risky_merchant"] and rule_score(hits, lists, SETTINGS) == pytest.approx(
        lists.thresholds["risky_merchant_weight"]
    )
    clean = build_lists(
        tx.with_columns(is_fraud=pl.lit(False)), features.with_columns(is_fraud=pl.lit(False)), REGISTRY, SETTINGS
    )
    assert clean.thresholds == {}


def test_without_ibans_ips_or_countries_the_rules_still_catch_fraud():
    tx = generate_days(WORLD.with_(tx_per_day=2500)).drop("payee_iban", "ip", "country", "device_id")
    _, evaluation, lists, _, _ = _evaluate(tx)
    assert not (lists.ibans or lists.ips or lists.countries)
    assert (
        evaluation.baseline["recall"] > 0.2
    )  # card testing, velocity, amount spike: learnt from nothing but amounts and times


def _band_scores(layer3_helps: bool, n: int = 20_000, seed: int = 0):
    """Validation rows where layer 2 sees a third of the frauds only faintly (low scores); layer 3 ranks
    them high, or (when it does not help) ranks everything at random."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.01
    hidden = y & (rng.random(n) < 0.35)
    s2 = np.where(y & ~hidden, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.3, n))
    s3 = np.where(y, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.5, n)) if layer3_helps else rng.random(n)
    customers = np.arange(n) % 2_000
    return {"layer": np.full(n, 2), "layer2": s2, "layer3": s3}, y, customers


def test_the_band_widens_where_layer_3_pays_within_the_latency_budget():
    scores, y, customers = _band_scores(layer3_helps=True)
    (low, high), search = choose_band(scores, y, customers, 0.99, SETTINGS)
    assert high == 1.0 and search["chosen_share"] == SETTINGS.cascade.layer3_max_share
    assert (scores["layer2"] >= low).mean() == pytest.approx(SETTINGS.cascade.layer3_max_share, abs=0.001)
    below = search["validation_frauds_below_band"]
    assert below == int((y & (scores["layer2"] < low)).sum()) and below < y.sum()
    narrow = SETTINGS.with_(cascade={"layer3_max_share": 0.1})  # a tighter latency budget
    _, tight = choose_band(scores, y, customers, 0.99, narrow)
    assert tight["chosen_share"] == 0.1 and tight["validation_frauds_below_band"] > below


def test_the_band_narrows_where_layer_3_costs_ranking_quality_and_never_leaves_layer2_flags_out():
    scores, y, customers = _band_scores(layer3_helps=False)
    (low, _), search = choose_band(scores, y, customers, 0.99, SETTINGS)
    assert search["chosen_share"] < SETTINGS.cascade.layer3_max_share
    assert search["best_share"] == search["chosen_share"] == 0.05
    (low, _), _ = choose_band(scores, y, customers, 0.2, SETTINGS)
    assert low <= 0.2  # never above what layer 2 alone would flag


def test_thresholds_reach_the_precision_and_weigh_recall():
    scored = pl.DataFrame(
        {
            "layer": [2] * 8,
            "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
            "is_fraud": [True, True, False, True, True, False, False, False],
        }
    )
    assert choose_threshold(scored, precision=0.7, beta=2.0) == 0.5  # 4 of 5 flagged are fraud, recall 1
    assert choose_threshold(scored, precision=0.95, beta=2.0) == 0.8
    assert choose_threshold(scored, precision=0.7, beta=0.5) == 0.8  # precision-weighted


def _log(n: int, decisions=("approve",), layer: int = 2, features=None) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    feats = features if features is not None else [{"amount": float(a)} for a in rng.lognormal(3.5, 0.8, n)]
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
    reference = pl.DataFrame({"amount": rng.lognormal(3.5, 0.8, 2000)})
    normal = _log(1000, decisions=("approve",) * 98 + ("review", "block"))
    assert feature_drift(reference, normal, SETTINGS).passed
    assert decision_rate(normal, 0.02, SETTINGS).passed
    assert layer3_share(normal.with_columns(layer=pl.Series([3] * 350 + [2] * 650)), SETTINGS).passed

    shifted = _log(1000, features=[{"amount": float(a)} for a in rng.lognormal(5.0, 0.8, 1000)])
    drift = feature_drift(reference, shifted, SETTINGS)
    assert (
        not drift.passed
        and drift.metadata["worst_feature"] == "amount"
        and drift.value > SETTINGS.monitoring.max_feature_drift_ks
    )
    assert isinstance(drift.metadata["top"], pl.DataFrame) and drift.threshold.startswith("KS <=")
    assert not layer3_share(normal.with_columns(layer=pl.lit(3)), SETTINGS).passed  # everything escalated
    assert not layer3_share(normal, SETTINGS).passed  # nothing escalated
    blocking_storm = _log(1000, decisions=("block", "approve"))
    assert not decision_rate(blocking_storm, 0.02, SETTINGS).passed
    assert not decision_rate(_log(1000), 0.02, SETTINGS).passed  # nothing flagged at all


def test_a_flag_rate_out_of_its_band_by_chance_alone_does_not_alert():
    """At a 0.2 % flag rate a day of 307 decisions (the fraud replay's kit days) has 0 flags 54 % of the time and
    2 or more 12 % of the time, so a band of x/÷ 3 around it alerted almost daily; the count must be unlikely even at
    the band's edge. 10,000 decisions without a flag, or 9 flags of 307, are."""
    one_in_300 = ("approve",) * 306 + ("review",)
    assert decision_rate(_log(307), 0.002, SETTINGS).passed
    assert decision_rate(_log(307, decisions=one_in_300[:152] + ("block",)), 0.002, SETTINGS).passed  # 2 flags
    quiet_day = decision_rate(_log(10_000), 0.002, SETTINGS)
    assert not quiet_day.passed and quiet_day.metadata["p_at_low_edge"] < 0.01
    assert not decision_rate(_log(307, decisions=("approve",) * 33 + ("block",)), 0.002, SETTINGS).passed


def test_drift_leaves_out_the_weekday_and_windows_longer_than_the_history_before_the_reference():
    registry = registry_for(SETTINGS)
    delay, longest = SETTINGS.features.label_delay_days, max(SETTINGS.features.history_days)
    names = [
        "amount",
        "weekday",
        "customer_count_30d",
        f"merchant_hist_count_{longest}d",
        f"merchant_hist_fraud_rate_{longest}d",
        f"category_hist_count_{longest}d",
        "tx_id",
    ]
    young = registry.not_comparable_daily(names, history_days=6)
    assert set(young) == {
        "weekday",
        f"category_hist_count_{longest}d",
        "customer_count_30d",
        f"merchant_hist_count_{longest}d",
        f"merchant_hist_fraud_rate_{longest}d",
    }
    assert (
        f"reaches {longest + delay} days back" in young[f"merchant_hist_fraud_rate_{longest}d"]
    )  # fraud history waits for its labels
    assert set(registry.not_comparable_daily(names, history_days=longest)) == {
        "weekday",
        f"category_hist_count_{longest}d",
        f"merchant_hist_fraud_rate_{longest}d",
    }
    # a day holds one value per category: the replay's kit (14 categories) showed KS 0.835 from December's volume
    old_enough = registry.not_comparable_daily(names, history_days=longest + delay)
    assert old_enough == {
        "weekday": "the same for every payment of a day",
        f"category_hist_count_{longest}d": "one value per category and day",
    }

    rng = np.random.default_rng(2)
    reference = pl.DataFrame(
        {"amount": rng.lognormal(3.5, 0.8, 2000), "customer_count_30d": rng.poisson(10, 2000).astype(float)}
    )
    filling = _log(
        1000,
        features=[
            {"amount": float(a), "customer_count_30d": float(c)}
            for a, c in zip(rng.lognormal(3.5, 0.8, 1000), rng.poisson(40, 1000), strict=True)
        ],
    )
    assert not feature_drift(reference, filling, SETTINGS).passed
    left_out = feature_drift(reference, filling, SETTINGS, {"customer_count_30d": young["customer_count_30d"]})
    assert left_out.passed and left_out.metadata["worst_feature"] == "amount"
    assert left_out.metadata["not_compared"]["feature"].to_list() == ["customer_count_30d"]


def test_down_sampled_training_gives_calibrated_probabilities_on_a_known_sample():
    """Payments whose fraud probability is known (a logistic function of the amount, ~0.2 % fraud); training
    keeps every fraud and about 2 % of the other payments: the final scores of the test days still match the
    known probabilities, quintile by quintile (the sampling is weighted back, and each layer is calibrated on
    the unsampled validation days). Without the correction they would be about 50 times too high."""
    data = _known_probability_payments(seed=4)
    settings = SETTINGS.with_(cascade={"max_legit_training_rows": 2_000})
    split = split_of([str(d) for d in data["day"].unique().to_list()], settings)
    cascade = train(data.drop("p"), split, REGISTRY, settings)
    test = split.frame(data, "test")
    predicted = cascade.score_frame(test)["score"].to_numpy()
    known = test["p"].to_numpy()
    assert predicted.sum() == pytest.approx(known.sum(), rel=0.2)
    for rows in np.array_split(np.argsort(predicted), 5):  # quintiles of the predicted probability
        assert abs(predicted[rows].mean() - known[rows].mean()) <= 0.25 * known[rows].mean() + 1e-3


def test_sample_weights_compose_and_weigh_the_sample_back_to_its_population():
    """Down-sampled twice (day by day upstream, as at volume, then in training): every fraud is kept with weight
    1, the weighted sample stands for the population it came from (its size and fraud rate, within 3 %), and
    rows that come from a thinly sampled day and from a full one end with one weight (kept in proportion to
    the weight they carried), so no few rows weigh hundreds of times more than the others."""
    from lakehouse.fraud.model import SAMPLE_WEIGHT, sample_rows

    rng = np.random.default_rng(5)
    n = 100_000
    days = [pl.DataFrame({"tx_id": np.arange(n) + k * n, "is_fraud": rng.random(n) < 0.004}) for k in range(2)]
    population = pl.concat(days)
    thin = sample_rows(days[0], 2_000, seed=1)  # about 2 % of the first day's payments kept upstream
    assert thin.filter(~pl.col("is_fraud"))[SAMPLE_WEIGHT].n_unique() == 1
    assert thin[SAMPLE_WEIGHT].sum() == pytest.approx(n, rel=0.03)
    both = pl.concat([thin, days[1]], how="diagonal_relaxed").fill_null(1.0)
    second = sample_rows(both, 3_000, seed=2)
    fraud, legit = second.filter(pl.col("is_fraud")), second.filter(~pl.col("is_fraud"))
    assert fraud.height == int(population["is_fraud"].sum()) and (fraud[SAMPLE_WEIGHT] == 1.0).all()
    represented = float(both.filter(~pl.col("is_fraud"))[SAMPLE_WEIGHT].sum())
    assert legit[SAMPLE_WEIGHT].to_numpy() == pytest.approx(represented / 3_000)  # one weight, whatever the day
    assert legit.filter(pl.col("tx_id") < n).height == pytest.approx(legit.height / 2, rel=0.1)  # both days
    assert second[SAMPLE_WEIGHT].sum() == pytest.approx(2 * n, rel=0.03)
    assert fraud.height / second[SAMPLE_WEIGHT].sum() == pytest.approx(float(population["is_fraud"].mean()), rel=0.03)
    assert sample_rows(population, 10 * n, seed=3)[SAMPLE_WEIGHT].to_list() == [1.0] * (2 * n)  # nothing to drop


def test_training_on_rows_down_sampled_upstream_predicts_the_population_rate():
    """As the volume benchmark trains: each training day's negatives down-sampled on its own (about 5 % kept,
    `sample_weight` = 1 / rate), then sampled again by `train` with the unsampled validation days for the refit.
    The calibrated final score predicts, on average over the unsampled test days, the known population fraud
    rate within 30 % (the margin of a 2,000-negative training sample: 0.88 to 1.22 of it over seeds). Without
    the upstream weights the refit learns training days with 20 times too few negatives, and the same
    calibration gives under half the rate (0.10 to 0.15 of it)."""
    from lakehouse.fraud.model import SAMPLE_WEIGHT, sample_rows

    data = _known_probability_payments(seed=6)
    settings = SETTINGS.with_(cascade={"max_legit_training_rows": 2_000})
    split = split_of([str(d) for d in data["day"].unique().to_list()], settings)
    training = split.frame(data, "train")
    upstream = [
        sample_rows(training.filter(pl.col("day") == d), 1_000, seed=i)
        for i, d in enumerate(training["day"].unique().sort())
    ]
    assert sum(s.height for s in upstream) < 0.06 * training.height  # about 5 % kept upstream
    rest = pl.concat([split.frame(data, "validation"), split.frame(data, "test")]).with_columns(
        pl.lit(1.0).alias(SAMPLE_WEIGHT)
    )
    test = split.frame(data, "test")
    rate = float(test["p"].mean())
    weighted = train(pl.concat([*upstream, rest]), split, REGISTRY, settings)
    assert float(weighted.score_frame(test)["score"].mean()) == pytest.approx(rate, rel=0.3)
    unweighted = train(pl.concat([*upstream, rest]).drop(SAMPLE_WEIGHT), split, REGISTRY, settings)
    assert float(unweighted.score_frame(test)["score"].mean()) < rate / 2


def _known_probability_payments(seed: int) -> pl.DataFrame:
    """Nine days of 20,000 payments whose fraud probability `p` is a known logistic function of the amount
    (about 0.2 % fraud), `is_fraud` drawn from it."""
    from datetime import date

    rng = np.random.default_rng(seed)
    days, per_day = 9, 20_000
    n = days * per_day
    x = rng.normal(0.0, 1.0, n)
    p = 1.0 / (1.0 + np.exp(-(-6.3 + 1.5 * x)))
    return pl.DataFrame(
        {
            "tx_id": [f"T{i}" for i in range(n)],
            "day": [date(2026, 11, 14) + timedelta(days=int(d)) for d in np.repeat(np.arange(days), per_day)],
            "customer_id": [f"C{i % 4_000}" for i in range(n)],
            "is_fraud": rng.random(n) < p,
            "amount": np.exp(3.0 + x),
            "rule_score": np.zeros(n),
            "p": p,
        }
    )
