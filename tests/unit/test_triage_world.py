"""The synthetic helpdesk: deterministic, realistic, valid against the raw schemas, any category set."""

from collections import Counter
from datetime import date, datetime

import polars as pl

from lakehouse.common.schema import validate_frame
from lakehouse.triage.pii import KnownPeople, scrub
from lakehouse.triage.pipeline import build_training_set, in_holdout, scrub_tickets
from lakehouse.triage.schemas import AGENT_LABELS, TICKETS
from lakehouse.triage.settings import TriageSettings
from lakehouse.triage.world import WorldConfig, generate_customers, generate_month, generic_categories

WORLD = WorldConfig(tickets_per_month=400, customers=300)


def extract_month(key: str, world: WorldConfig):
    customers = generate_customers(world)
    tickets, labels = generate_month(world, date.fromisoformat(key), customers)
    return tickets, customers, labels


def clean_month(world: WorldConfig, key: str):
    tickets, customers, labels = extract_month(key, world)
    return scrub_tickets(tickets, KnownPeople.from_records(customers.to_dicts()), key[:7], "GB"), labels


def test_same_seed_same_month_and_months_are_independent():
    customers = generate_customers(WORLD)
    a, la = generate_month(WORLD, date(2026, 3, 1), customers)
    b, lb = generate_month(WORLD, date(2026, 3, 1), customers)
    c, _ = generate_month(WORLD, date(2026, 4, 1), customers)
    assert a.equals(b) and la.equals(lb)
    assert not a["body"].equals(c["body"])
    assert (a["created_at"].dt.month() == 3).all()


def test_tickets_carry_the_difficulties_and_personal_data_of_real_ones():
    tickets, labels = generate_month(WORLD, date(2026, 3, 1), generate_customers(WORLD))
    body = tickets["body"]
    assert body.str.contains("<p>").mean() > 0.02  # HTML mail
    assert body.str.contains("wrote:").mean() > 0.1  # quoted history
    assert body.str.contains(r"(?i)regards|thanks,|cheers,").mean() > 0.2  # signatures
    assert body.str.contains("Also,|By the way,|one more thing|Unrelated").mean() > 0.05  # a second topic
    found = sum((scrub(b).found for b in body), Counter())
    assert found["email"] > 0.1 * len(body) and found["card"] > 10 and found["iban"] > 10
    validate_frame(tickets, TICKETS, source="t", today=date(2026, 11, 1))
    validate_frame(labels, AGENT_LABELS, source="t", today=date(2026, 11, 1))
    assert labels["category"].n_unique() == 12
    assert (labels["labelled_at"] > tickets["created_at"]).all()


def test_some_agent_labels_are_wrong():
    world = WORLD.with_(mislabel_rate=0.5, vague_rate=0.0)
    tickets, noisy = generate_month(world, date(2026, 3, 1), generate_customers(world))
    _, clean_labels = generate_month(world.with_(mislabel_rate=0.0), date(2026, 3, 1), generate_customers(world))
    disagree = (noisy["category"] != clean_labels["category"]).mean()
    assert 0.3 < disagree < 0.6


def test_a_helpdesk_with_5_or_80_categories_works_unchanged():
    for n in (5, 80):
        world = WORLD.with_(categories=generic_categories(n), tickets_per_month=600)
        clean, labels = clean_month(world, "2026-02-01")
        assert set(labels["category"]) <= set(world.categories)
        assert labels["category"].n_unique() >= min(n, 60)
        settings = TriageSettings(training={"tickets": 500})
        training = build_training_set(clean, labels, datetime(2026, 3, 1), settings)
        assert training.height == 500
        assert set(training["category"]) <= set(world.categories)


def test_holdout_membership_is_stable_and_training_excludes_it():
    ids = pl.Series([f"T{i}" for i in range(5000)])
    member = in_holdout(ids, 0.1)
    assert member.equals(in_holdout(ids, 0.1)) and 0.08 < member.mean() < 0.12
    clean, labels = clean_month(WORLD, "2026-02-01")
    training = build_training_set(clean, labels, datetime(2026, 3, 1), TriageSettings())
    assert not in_holdout(training["ticket_id"], 0.1).any()
    assert (training["split"] == "validation").mean() > 0.15
    assert (
        training.filter(pl.col("split") == "validation")["created_at"].min()
        >= training.filter(pl.col("split") == "train")["created_at"].max()
    )
