"""Routing threshold, metrics and the promotion gate (including refusing a worse challenger)."""

import math

import numpy as np

from lakehouse.triage.config import TriageSettings
from lakehouse.triage.model import AUTO, HUMAN, evaluate, gate, route

SETTINGS = TriageSettings()


def test_only_confidence_strictly_above_the_threshold_is_auto_routed():
    routes = route(np.array([0.0, 0.5, 0.849999, 0.85, 0.850001, 0.99, 1.0]), 0.85)
    assert routes.tolist() == [HUMAN, HUMAN, HUMAN, HUMAN, AUTO, AUTO, AUTO]


def test_evaluate_counts_auto_rate_and_precision_on_auto_routed_only():
    true = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    conf = np.array([0.9, 0.95, 0.5, 0.99, 0.6])
    m = evaluate(true, pred, conf, 0.85)
    assert m["auto_rate"] == 3 / 5
    assert m["auto_precision"] == 2 / 3
    assert m["accuracy"] == 3 / 5
    assert math.isclose(m["macro_f1"], (0.5 + 0.8 + 0.0) / 3)  # F1 of a, b, c


def _metrics(f1=0.9, precision=0.95, holdout=0.9):
    return {"macro_f1": f1, "auto_precision": precision, "holdout_macro_f1": holdout}


def test_gate_promotes_a_good_first_model():
    assert gate(_metrics(), None, SETTINGS).passed


def test_gate_refuses_low_f1_or_low_auto_precision_or_nothing_auto_routed():
    assert not gate(_metrics(f1=SETTINGS.gate_min_macro_f1 - 0.01), None, SETTINGS).passed
    refused = gate(_metrics(precision=SETTINGS.gate_min_auto_precision - 0.01), None, SETTINGS)
    assert not refused.passed and "precision" in refused.summary
    assert not gate(_metrics(precision=float("nan")), None, SETTINGS).passed


def test_gate_refuses_a_challenger_worse_than_the_champion_on_the_frozen_holdout():
    champion = 0.92
    worse = gate(_metrics(holdout=champion - SETTINGS.not_worse_tolerance - 0.005), champion, SETTINGS)
    assert not worse.passed and "worse than the champion" in worse.summary
    assert gate(_metrics(holdout=champion - SETTINGS.not_worse_tolerance + 0.005), champion, SETTINGS).passed
    assert gate(_metrics(holdout=champion + 0.02), champion, SETTINGS).passed


def test_a_helpdesk_of_five_categories_trains_and_predicts_its_own_categories(tmp_path):
    from datetime import date

    from lakehouse.triage.config import SetFitBudget, WorldConfig
    from lakehouse.triage.data import extract_month, scrub_tickets
    from lakehouse.triage.model import TriageClassifier, train_setfit
    from lakehouse.triage.world import generic_categories

    categories = generic_categories(5)
    world = WorldConfig(tickets_per_month=120, customers=50, categories=categories, vague_rate=0.0, mix_skew=0.0)
    tickets, customers, labels = extract_month("2026-02-01", world=world, today=date(2026, 11, 1))
    data = scrub_tickets(tickets, customers, "2026-02-01").join(labels.select("ticket_id", "category"), on="ticket_id")
    train, test = data.head(90), data.tail(30)
    model = train_setfit(train["text"].to_list(), train["category"].to_list(), SetFitBudget(max_steps=1, batch_size=8))
    TriageClassifier(model).save(tmp_path / "m")
    for quantize in (False, True):
        classifier = TriageClassifier.load(tmp_path / "m", quantize=quantize)
        assert sorted(classifier.categories) == sorted(c.name for c in categories)
        predicted = classifier.predict(test["text"].to_list())
        assert predicted.height == 30 and predicted["confidence"].is_between(0, 1).all()
        assert (predicted["category"] == test["category"]).mean() > 0.8
    assert classifier.predict([]).height == 0
