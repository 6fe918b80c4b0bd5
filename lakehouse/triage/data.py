"""From the helpdesk's raw export to the scrubbed monthly tables, the training set and the hold-out."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from pathlib import Path

import polars as pl

from lakehouse.common.schema import validate_frame
from lakehouse.triage.config import Category, TriageSettings, WorldConfig
from lakehouse.triage.pii import KnownPeople, model_text, prepare
from lakehouse.triage.schemas import AGENT_LABELS, CLEAN_TICKETS, CUSTOMERS, TICKETS, load_raw_tables
from lakehouse.triage.world import generate_customers, generate_month


def month_start(key: str) -> date:
    return date.fromisoformat(f"{key[:7]}-01")


def month_end(key: str) -> datetime:
    """First instant of the next month (exclusive end)."""
    start = month_start(key)
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1)


def extract_month(
    key: str,
    *,
    source_dir: str | None = None,
    world: WorldConfig | None = None,
    category_weights: list[float] | None = None,
    today: date | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(raw tickets, CRM customers, agent labels) of one month, validated against their schemas.

    From the user's files when `source_dir` is given, else from the synthetic helpdesk.
    """
    today = today or date.today()
    start, end = datetime.combine(month_start(key), datetime.min.time()), month_end(key)
    if source_dir:
        tables = load_raw_tables(Path(source_dir), today)
        tickets = tables["tickets"].filter(pl.col("created_at").is_between(start, end, closed="left"))
        labels = tables["agent_labels"].join(tickets.select("ticket_id"), on="ticket_id", how="semi")
        return tickets, tables["customers"], labels
    world = world or WorldConfig.from_env()
    customers = generate_customers(world)
    tickets, labels = generate_month(world, month_start(key), customers, category_weights)
    return (
        validate_frame(tickets, TICKETS, source="generator", today=today),
        validate_frame(customers, CUSTOMERS, source="generator", today=today),
        validate_frame(labels, AGENT_LABELS, source="generator", today=today),
    )


def scrub_tickets(tickets: pl.DataFrame, customers: pl.DataFrame, key: str) -> pl.DataFrame:
    """The month's tickets with scrubbed, cleaned text only (the raw text is dropped)."""
    people = KnownPeople.from_records(customers.to_dicts())
    subjects, bodies, texts, counts = [], [], [], []
    for subject, body, customer in zip(tickets["subject"], tickets["body"], tickets["customer_id"]):
        s, b, found = prepare(subject, body or "", people, customer)
        subjects.append(s)
        bodies.append(b)
        texts.append(model_text(s, b))
        counts.append(sum(found.values()))
    clean = tickets.select("ticket_id", "customer_id", "channel", "created_at").with_columns(
        month=pl.lit(key[:7]),
        subject=pl.Series(subjects, dtype=pl.String),
        body=pl.Series(bodies, dtype=pl.String),
        text=pl.Series(texts, dtype=pl.String),
        order_refs=tickets["order_refs"],
        pii_found=pl.Series(counts, dtype=pl.Int64),
    )
    return clean.select(CLEAN_TICKETS.column_names).sort("created_at", "ticket_id")


def in_holdout(ticket_ids: pl.Series, share: float) -> pl.Series:
    """Stable membership of the frozen hold-out, from a hash of the ticket id."""
    def bucket(ticket_id: str) -> float:
        return int.from_bytes(hashlib.sha256(ticket_id.encode()).digest()[:8], "big") / 2**64

    return pl.Series([bucket(t) < share for t in ticket_ids], dtype=pl.Boolean)


def labelled(clean: pl.DataFrame, labels: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Tickets whose validated label was known at `as_of`."""
    known = labels.filter(pl.col("labelled_at") <= as_of).select("ticket_id", "category", "labelled_at")
    return clean.filter(pl.col("created_at") <= as_of).join(known, on="ticket_id")


def build_holdout(clean: pl.DataFrame, labels: pl.DataFrame, as_of: datetime, settings: TriageSettings) -> pl.DataFrame:
    """The frozen hold-out: the hashed share of every labelled ticket known at `as_of`."""
    rows = labelled(clean, labels, as_of)
    return rows.filter(in_holdout(rows["ticket_id"], settings.holdout_share)).select(
        "ticket_id", "month", "created_at", "text", "category"
    ).sort("created_at", "ticket_id")


def build_training_set(clean: pl.DataFrame, labels: pl.DataFrame, as_of: datetime, settings: TriageSettings) -> pl.DataFrame:
    """The most recent validated tickets outside the hold-out; the newest share is the gate's validation set."""
    rows = labelled(clean, labels, as_of)
    rows = rows.filter(~in_holdout(rows["ticket_id"], settings.holdout_share))
    rows = rows.sort("created_at", "ticket_id").tail(settings.training_tickets)
    n_valid = max(1, round(rows.height * settings.validation_share))
    split = pl.Series(["train"] * (rows.height - n_valid) + ["validation"] * n_valid, dtype=pl.String)
    return rows.select("ticket_id", "month", "created_at", "text", "category", "labelled_at").with_columns(split=split)


def category_mix(categories: pl.Series) -> pl.DataFrame:
    return (
        pl.DataFrame({"category": categories})
        .group_by("category")
        .agg(tickets=pl.len())
        .with_columns(share=pl.col("tickets") / pl.col("tickets").sum())
        .sort("category")
    )


def team_of(categories: tuple[Category, ...]) -> dict[str, str]:
    return {c.name: c.team for c in categories}
