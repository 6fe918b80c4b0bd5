"""Routing, metrics, the thresholds, and a small trained classifier: its own categories, an
out-of-scope rule fitted on validation, and answers that do not depend on the batch."""

import math
import os
from datetime import date

import numpy as np
import polars as pl
import pytest

from lakehouse.triage.model import (
    AUTO,
    CONFIDENT,
    HUMAN,
    LOW_CONFIDENCE,
    OUT_OF_SCOPE,
    evaluate,
    fit_auto_threshold,
    probe_sample,
    route,
    training_plan,
)
from lakehouse.triage.settings import TriageSettings

SETTINGS = TriageSettings()


def _predictions(confidence, out_of_scope=None, category=None) -> pl.DataFrame:
    n = len(confidence)
    return pl.DataFrame(
        {
            "category": category or ["a"] * n,
            "confidence": np.asarray(confidence, dtype=float),
            "out_of_scope": out_of_scope or [False] * n,
        }
    )


def test_only_confidence_strictly_above_the_threshold_is_auto_routed_and_out_of_scope_goes_to_humans():
    routed = route(_predictions([0.0, 0.5, 0.849999, 0.85, 0.850001, 0.99, 1.0], [False] * 6 + [True]), 0.85)
    assert routed["route"].to_list() == [HUMAN, HUMAN, HUMAN, HUMAN, AUTO, AUTO, HUMAN]
    assert routed["reason"].to_list() == [LOW_CONFIDENCE] * 4 + [CONFIDENT] * 2 + [OUT_OF_SCOPE]


def test_evaluate_counts_auto_rate_and_precision_on_auto_routed_only_and_out_of_scope_recall():
    true = ["a", "a", "b", "b", "c", "out_of_scope", "out_of_scope"]
    pred = ["a", "b", "b", "b", "a", "out_of_scope", "a"]
    routed = route(
        _predictions([0.9, 0.95, 0.5, 0.99, 0.6, 0.3, 0.9], [False, False, False, False, False, True, False], pred),
        0.85,
    )
    m = evaluate(true, routed, "out_of_scope")
    assert m["auto_rate"] == 4 / 7 and m["auto_precision"] == 2 / 4
    assert m["accuracy"] == 4 / 7 and m["in_scope_accuracy"] == 3 / 5 and m["out_of_scope_recall"] == 1 / 2
    f1 = {"a": 2 * (1 / 3 * 1 / 2) / (1 / 3 + 1 / 2), "b": 0.8, "c": 0.0, "out_of_scope": 2 / 3}
    assert math.isclose(m["macro_f1"], sum(f1.values()) / 4)


def test_the_step_budget_caps_the_passes_over_the_tickets():
    settings = SETTINGS.with_(training={"epochs": 2, "max_steps": 100, "batch_size": 32})
    assert training_plan(320, settings) == 20  # two passes of 10 batches
    assert training_plan(32_000, settings) == 100  # the budget
    assert training_plan(1, settings) == 1


def test_torch_threads_sleep_rather_than_spin_unless_the_user_says_otherwise(monkeypatch):
    """Set before the OpenMP runtime loads (importing the model module loads no torch, importing the code location no
    OpenMP library): spinning threads were 4-5 times slower per training step on the busy 2 cores."""
    import subprocess
    import sys

    from lakehouse.triage.model import _offline

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    _offline()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    _offline()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, lakehouse.triage.model; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"
    # The code location sets it at import, before any case loads the OpenMP runtime that torch then shares.
    code = (
        "import os, definitions; print(os.environ['OMP_WAIT_POLICY'],"
        " any('gomp' in line for line in open('/proc/self/maps')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    location = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert location.stdout.split() == ["PASSIVE", "False"]


def test_the_linear_probe_reads_at_most_its_cap_of_each_category_and_every_category():
    labels = np.array([0] * 50 + [1] * 3 + [2] * 10)
    rows = probe_sample(labels, per_category=5, seed=0)
    assert np.bincount(labels[rows]).tolist() == [5, 3, 5] and (np.diff(rows) > 0).all()
    assert (probe_sample(labels, per_category=5, seed=0) == rows).all() and not (
        probe_sample(labels, per_category=5, seed=1) == rows
    ).all()


def test_the_probe_starts_the_head_where_a_logistic_regression_on_the_pretrained_body_puts_it():
    from setfit import SetFitModel

    from lakehouse.triage.model import _offline, body_path, probe

    _offline()
    texts = [
        "my parcel has not arrived",
        "where is my delivery",
        "the courier lost my package",
        "I was charged twice",
        "refund the double payment",
        "my invoice is wrong",
    ]
    labels = [0, 0, 0, 1, 1, 1]
    model = SetFitModel.from_pretrained(
        str(body_path()), labels=["delivery", "billing"], use_differentiable_head=True, head_params={"out_features": 2}
    )
    probe(model.model_body, model.model_head, texts, labels, SETTINGS)
    assert model.predict_proba(texts).argmax(axis=1).tolist() == labels


def test_the_auto_threshold_is_the_lowest_confidence_whose_tickets_above_meet_the_precision_target():
    confidence = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.91, 0.90, 0.80])
    right = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1], dtype=bool)
    # The 9 most confident are right 8 times in 9; the 4 most confident always.
    threshold, met = fit_auto_threshold(confidence, right, 0.85, 8 / 9)
    assert met and threshold == pytest.approx((0.91 + 0.90) / 2)
    threshold, met = fit_auto_threshold(confidence, right, 0.85, 0.95)
    assert met and threshold == pytest.approx((0.96 + 0.95) / 2)
    assert (confidence > threshold).sum() == 4


def test_the_auto_threshold_never_falls_below_the_floor_and_keeps_it_when_the_target_is_out_of_reach():
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7])
    assert fit_auto_threshold(confidence, np.ones(5, dtype=bool), 0.85, 0.99) == (0.85, True)
    assert fit_auto_threshold(confidence, np.zeros(5, dtype=bool), 0.85, 0.5) == (0.85, False)
    assert fit_auto_threshold(confidence, np.zeros(5, dtype=bool), 0.85, None) == (0.85, None)
    assert fit_auto_threshold(np.zeros(0), np.zeros(0, dtype=bool), 0.85, 0.99) == (0.85, None)
    # Tied confidences cannot be split: the threshold goes above both when one of them is wrong.
    threshold, met = fit_auto_threshold(np.array([0.99, 0.9, 0.9]), np.array([True, True, False]), 0.85, 0.99)
    assert met and threshold == pytest.approx(0.945)


def test_at_a_confidence_level_the_precision_target_must_hold_on_the_lower_bound_and_weights_count_as_fewer_tickets():
    from statsmodels.stats.proportion import proportion_confint

    # 1,000 validation tickets, confidence falling; one ticket in 50 wrong among the 600 most confident, then one in 5.
    confidence = np.linspace(0.999, 0.86, 1000)
    right = np.ones(1000, dtype=bool)
    right[49:600:50] = False
    right[600::5] = False
    point, met = fit_auto_threshold(confidence, right, 0.85, 0.97)
    bounded, met_bounded = fit_auto_threshold(confidence, right, 0.85, 0.97, level=0.95)
    assert met and met_bounded and bounded > point
    # The most tickets whose 95 % one-sided lower bound still meets the target.
    bounds = proportion_confint(np.cumsum(right), np.arange(1, 1001), alpha=0.1, method="wilson")[0]
    assert (confidence > bounded).sum() == np.flatnonzero(bounds >= 0.97).max() + 1
    # The same tickets, each counted twice by weight: the effective sample size is unchanged, and so is the threshold.
    assert fit_auto_threshold(confidence, right, 0.85, 0.97, np.full(1000, 2.0), level=0.95) == (bounded, True)
    # Uneven weights make a smaller effective sample, hence a wider bound and a threshold at least as high.
    uneven = np.where(np.arange(1000) % 10 == 0, 5.0, 1.0)
    assert (
        fit_auto_threshold(confidence, right, 0.85, 0.97, uneven, level=0.95)[0]
        >= fit_auto_threshold(confidence, right, 0.85, 0.97, uneven)[0]
    )


def test_the_out_of_scope_threshold_maximises_validation_accuracy_within_the_cap():
    from lakehouse.triage.model import fit_out_of_scope_threshold

    best_known = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 0.95])
    right = np.array([False, False, False, False, True, True, True])  # the most probable category is right
    labelled_out = np.array([True, True, False, True, False, False, False])
    # Rejecting the four least confident catches the three out-of-scope tickets and loses no right answer.
    assert fit_out_of_scope_threshold(best_known, right, labelled_out, cap=0.8) == pytest.approx(0.55)
    # With two out-of-scope tickets, rejecting two, three or four is as good: the lowest threshold wins.
    assert fit_out_of_scope_threshold(
        best_known, right, np.array([True, True, False, False, False, False, False]), cap=0.8
    ) == pytest.approx(0.35)
    assert fit_out_of_scope_threshold(best_known, right, labelled_out, cap=0.36) == pytest.approx(0.35)
    assert fit_out_of_scope_threshold(best_known, right, labelled_out, cap=0.1) == 0.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier fine-tuned for a few steps on a 5-category helpdesk; the validation month holds tickets of a
    sixth category labelled `out_of_scope`, which the model never learned."""
    from lakehouse.triage.model import train
    from lakehouse.triage.pii import KnownPeople
    from lakehouse.triage.pipeline import scrub_tickets
    from lakehouse.triage.world import WorldConfig, generate_customers, generate_month, generic_categories

    categories = generic_categories(6)
    world = WorldConfig(tickets_per_month=160, customers=50, categories=categories, vague_rate=0.0, mix_skew=0.0)
    customers = generate_customers(world)
    months = []
    for month in (2, 3):
        tickets, labels = generate_month(world, date(2026, month, 1), customers)
        clean = scrub_tickets(tickets, KnownPeople.from_records(customers.to_dicts()), f"2026-0{month}", "GB")
        labels = labels.with_columns(
            category=pl.when(pl.col("category") == categories[5]).then(pl.lit("out_of_scope")).otherwise("category")
        )
        months.append(clean.join(labels.select("ticket_id", "category"), on="ticket_id"))
    train_df = months[0].filter(pl.col("category") != "out_of_scope")
    settings = SETTINGS.with_(
        training={"max_steps": 12, "batch_size": 16}, out_of_scope={"max_in_scope_rejection": 0.05}
    )
    lines: list[str] = []
    result = train(train_df, months[1], settings, directory=tmp_path_factory.mktemp("classifier"), log=lines.append)
    return result, months[1], settings, lines


def test_a_helpdesk_of_five_categories_gets_its_own_categories_and_out_of_scope_tickets_are_detected(trained):
    result, test, settings, _ = trained
    assert sorted(result.categories) == sorted(test.filter(pl.col("category") != "out_of_scope")["category"].unique())
    predicted = result.classifier.predict(test["text"].to_list())
    assert predicted.height == test.height and predicted["confidence"].is_between(0, 1).all()
    known = test["category"] != "out_of_scope"
    assert (predicted["category"] == test["category"]).filter(known).mean() > 0.8
    # The rule was fitted to reject at most 5 % of the known categories' validation tickets; unseen ones score lower.
    assert 0 < result.out_of_scope_threshold < 1
    assert predicted["out_of_scope"].filter(known).mean() <= 0.1
    assert predicted["out_of_scope"].filter(~known).mean() > predicted["out_of_scope"].filter(known).mean()
    assert result.classifier.predict([]).height == 0
    # The auto route's threshold was fitted on validation, never below the seed's, and the classifier routes with it.
    assert (
        settings.confidence_threshold <= result.auto_threshold < 1
        and result.classifier.auto_threshold == result.auto_threshold
    )
    assert result.auto_precision_target_met is not None


def test_a_training_says_where_it_is_in_each_phase(trained):
    result, _, _, lines = trained
    phases = [
        "loading the body",
        "linear probe: embedding",
        "fine-tuning body and head",
        f"step {result.steps}/{result.steps}",
        "exporting",
        "quantizing",
        "refitting the head",
        "calibrating on",
    ]
    assert all(any(line.startswith(phase) for line in lines) for phase in phases), lines
    # The validation month holds tickets labelled out of scope: the rule runs.
    assert result.out_of_scope_rule and "out-of-scope rule on" in " ".join(lines)


def test_quantization_writes_nothing_in_the_working_directory(tmp_path, monkeypatch):
    import onnx
    from setfit import SetFitModel

    from lakehouse.triage.model import BODY_FILE, TriageClassifier, body_path, export, quantize

    model = SetFitModel.from_pretrained(
        str(body_path()), labels=["a", "b"], use_differentiable_head=True, head_params={"out_features": 2}
    )
    directory = tmp_path / "classifier"
    export(model, directory, SETTINGS)
    before = sorted(p.name for p in directory.iterdir())
    working = tmp_path / "cwd"
    working.mkdir()
    monkeypatch.chdir(working)
    quantize(directory, ["where is my parcel", "I was charged twice", "reset my password please"], SETTINGS)
    assert list(working.iterdir()) == [] and sorted(p.name for p in directory.iterdir()) == before
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(directory / BODY_FILE)).graph.node)
    assert TriageClassifier(directory).predict(["where is my parcel"]).height == 1


def test_a_tickets_answer_does_not_depend_on_its_batch(trained):
    result, test, _, _ = trained
    classifier, texts = result.classifier, test["text"].to_list()
    batched = classifier.predict(texts)
    alone = pl.concat([classifier.predict([t]) for t in texts])
    order = np.random.default_rng(0).permutation(len(texts))
    shuffled = classifier.predict([texts[i] for i in order])[np.argsort(order).tolist()]
    for other in (alone, shuffled):
        assert other["category"].to_list() == batched["category"].to_list()
        assert other["out_of_scope"].to_list() == batched["out_of_scope"].to_list()
        assert (other["confidence"] - batched["confidence"]).abs().max() < 1e-5  # docs/triage.md, Serving


def test_the_saved_classifier_loads_with_the_same_answers(trained):
    from lakehouse.triage.model import TriageClassifier

    result, test, _, _ = trained
    texts = test["text"].head(20).to_list()
    again = TriageClassifier(result.directory)
    assert again.predict(texts).equals(result.classifier.predict(texts))


def test_prior_weights_give_the_out_of_scope_tickets_the_expected_share():
    from lakehouse.triage.model import prior_weights

    labelled_out = np.array([True] + [False] * 9)  # 10 % in validation
    weights = prior_weights(labelled_out, 0.25)
    assert weights[labelled_out].sum() / weights.sum() == pytest.approx(0.25)
    assert weights.sum() == pytest.approx(10)
    assert (prior_weights(labelled_out, None) == 1).all()
    assert (prior_weights(np.zeros(4, dtype=bool), 0.25) == 1).all()  # nothing to reweigh


def test_weights_move_both_thresholds_towards_the_expected_out_of_scope_share():
    from lakehouse.triage.model import fit_out_of_scope_threshold

    # The one wrong confident ticket is out of scope: counted at weight 4, the top five are right half the time.
    confidence = np.array([0.99, 0.98, 0.97, 0.96, 0.95])
    right = np.array([True, True, False, True, True])
    heavier = np.array([1.0, 1.0, 4.0, 1.0, 1.0])
    assert fit_auto_threshold(confidence, right, 0.85, 0.8) == (0.85, True)
    threshold, met = fit_auto_threshold(confidence, right, 0.85, 0.8, heavier)
    assert met and threshold == pytest.approx(0.975)

    best_known = np.array([0.2, 0.3, 0.4, 0.9])
    right = np.array([False, True, False, True])
    labelled_out = np.array([True, False, True, False])
    assert fit_out_of_scope_threshold(best_known, right, labelled_out, cap=0.8) == pytest.approx(0.25)
    assert fit_out_of_scope_threshold(
        best_known, right, labelled_out, cap=0.8, weights=np.where(labelled_out, 2.0, 1.0)
    ) == pytest.approx(0.65)
