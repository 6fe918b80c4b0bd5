"""The one promotion path: floors, like-for-like comparisons with an interval, support, the recorded verdict,
promotion, refusal, rollback and history, on a real MLflow registry (SQLite)."""

import numpy as np
import pytest

from lakehouse.common import promotion
from lakehouse.common.promotion import ComparisonSettings, Floor, Verdict
from lakehouse.common.registry import CHALLENGER, CHAMPION, Registry

SETTINGS = ComparisonSettings(resamples=400)


def _mean_of(values: np.ndarray):
    return lambda index: float(values[index].mean())


def test_a_floor_names_its_shortfall():
    floor = Floor("recall", 0.71, 0.75)
    assert not floor.passed and floor.shortfall == pytest.approx(0.04)
    assert floor.reason() == "recall 0.71 < 0.75 (short by 0.04)"
    assert Floor("WAPE", 0.12, 0.2, "<=").passed and not Floor("recall", float("nan"), 0.5).passed


def test_a_challenger_clearly_worse_on_the_same_rows_is_refused_and_one_within_noise_is_not():
    rng = np.random.default_rng(0)
    champion = rng.random(2_000) < 0.9  # right 90 % of the time
    worse = champion & (rng.random(2_000) < 0.8)  # loses a fifth of those
    noisy = champion.copy()  # as many tickets lost as won
    noisy[np.flatnonzero(champion)[:30]] = False
    noisy[np.flatnonzero(~champion)[:30]] = True
    clear = promotion.compare(
        "champion v1",
        "accuracy",
        challenger=_mean_of(worse),
        other=_mean_of(champion),
        units=2_000,
        support=2_000,
        support_unit="tickets",
        settings=SETTINGS,
    )
    assert clear.worse and clear.interval[1] < 0 and clear.status == "worse beyond noise"
    close = promotion.compare(
        "champion v1",
        "accuracy",
        challenger=_mean_of(noisy),
        other=_mean_of(champion),
        units=2_000,
        support=2_000,
        support_unit="tickets",
        settings=SETTINGS,
    )
    assert not close.worse and close.interval[0] < 0 < close.interval[1]


def test_lower_is_better_metrics_and_the_tolerance():
    errors_ours, errors_theirs = np.full(100, 1.1), np.full(100, 1.0)
    lost = promotion.compare(
        "seasonal naive",
        "WAPE",
        challenger=_mean_of(errors_ours),
        other=_mean_of(errors_theirs),
        units=100,
        support=100,
        support_unit="series",
        settings=SETTINGS,
        higher_is_better=False,
    )
    assert lost.gain == pytest.approx(-0.1) and lost.worse
    tolerant = promotion.compare(
        "seasonal naive",
        "WAPE",
        challenger=_mean_of(errors_ours),
        other=_mean_of(errors_theirs),
        units=100,
        support=100,
        support_unit="series",
        settings=SETTINGS.model_copy(update={"tolerance": 0.2}),
        higher_is_better=False,
    )
    assert not tolerant.worse


def test_a_baseline_measured_on_a_handful_of_items_does_not_decide():
    # Rules-only precision 1.0 from one flagged payment against a cascade at 0.75 on 300 flags.
    ours, theirs = np.r_[np.ones(225), np.zeros(75)], np.ones(300)
    few = promotion.compare(
        "rules only",
        "precision",
        challenger=_mean_of(ours),
        other=_mean_of(theirs),
        units=300,
        support=1,
        support_unit="flagged payments",
        settings=SETTINGS,
    )
    assert not few.decisive and not few.worse and few.status.startswith("not decisive: 1 flagged payments")
    verdict = Verdict("m", "2", None, floors=(Floor("recall", 0.8, 0.75),), comparisons=(few,))
    assert verdict.passed and "not decisive" in verdict.summary()


def test_the_verdict_reads_as_the_people_who_act_on_it():
    verdict = Verdict("fraud", "4", "3", floors=(Floor("recall", 0.71, 0.75), Floor("precision", 0.8, 0.5)))
    assert not verdict.passed
    assert verdict.summary() == "kept v3; v4 refused: recall 0.71 < 0.75 (short by 0.04)"
    outcome = verdict.outcome()
    assert outcome.severity == "WARN" and not outcome.passed and outcome.metadata["floors"].height == 2
    assert Verdict.from_json(verdict.to_json()) == verdict


def test_no_fair_comparison_leaves_the_floors_to_decide():
    impossible = promotion.no_fair_comparison("champion v1", "AP", "v1 trained on every row of the test window")
    verdict = Verdict("m", "2", "1", floors=(Floor("recall", 0.8, 0.75),), comparisons=(impossible,))
    assert verdict.passed and verdict.comparisons_frame()["status"][0].startswith("no fair comparison")


def _register(registry: Registry, name: str) -> str:
    client = registry.client
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, source="file:///nowhere").version
    registry.set_alias(name, CHALLENGER, str(version))
    return str(version)


def test_promotion_moves_champion_only_on_a_recorded_pass_and_rollback_restores_a_passed_version(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts")
    name = "m"
    with pytest.raises(ValueError, match="promotion"):
        registry.set_alias(name, CHAMPION, "1")
    v1 = _register(registry, name)
    refused = promotion.promote(registry, name)
    assert refused.refused and refused.champion is None and "no gate has judged v1" in refused.message
    promotion.record(registry, Verdict(name, v1, None, floors=(Floor("auc", 0.8, 0.7),)))
    first = promotion.promote(registry, name)
    assert first.moved and registry.alias_version(name, CHAMPION) == v1
    v2 = _register(registry, name)
    promotion.record(registry, Verdict(name, v2, v1, floors=(Floor("auc", 0.6, 0.7),)))
    kept = promotion.promote(registry, name)
    assert not kept.moved and kept.refused and registry.alias_version(name, CHAMPION) == v1
    assert kept.message == "kept v1; v2 refused: auc 0.6 < 0.7 (short by 0.1)"
    assert promotion.serving_choice(registry, name).version == v1
    v3 = _register(registry, name)
    promotion.record(registry, Verdict(name, v3, v1, floors=(Floor("auc", 0.9, 0.7),)))
    assert promotion.promote(registry, name).moved and registry.alias_version(name, CHAMPION) == v3
    with pytest.raises(ValueError, match="verdict is failed"):
        promotion.rollback(registry, name, v2, "v3 misbehaves")
    with pytest.raises(ValueError, match="reason"):
        promotion.rollback(registry, name, v1, " ")
    back = promotion.rollback(registry, name, v1, "v3 misbehaves in production")
    assert back.moved and registry.alias_version(name, CHAMPION) == v1
    history = promotion.history(registry, name)
    assert history["gate"].to_list() == ["passed", "failed", "passed"]
    row1, row3 = history.row(0, named=True), history.row(2, named=True)
    assert row1["champion_until"].endswith("now") and ";" in row1["champion_from"]  # champion twice
    assert row3["champion_until"] != "now" and "champion" in row1["aliases"]
    assert promotion.champion_log(registry, name)[-1]["note"] == "rollback: v3 misbehaves in production"


def test_with_no_champion_the_latest_challenger_serves_in_shadow(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts")
    assert promotion.serving_choice(registry, "m") is None
    v1 = _register(registry, "m")
    promotion.record(registry, Verdict("m", v1, None, floors=(Floor("recall", 0.71, 0.75),)))
    choice = promotion.serving_choice(registry, "m")
    assert choice.shadow and choice.version == v1 and choice.alias == CHALLENGER and "refused" in choice.note
