"""The raw tables of the triage case (what users may bring) and the scrubbed tables the lake keeps."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from lakehouse.common.schema import Column, TableSchema, find_table_file, load_tables, validate_references

CUSTOMERS = TableSchema(
    name="customers",
    description="The CRM's customers. Read to recognise their names and contact details in tickets; never stored in the lake.",
    key=("customer_id",),
    columns=(
        Column("customer_id", pl.String, "Customer id."),
        Column("first_name", pl.String, "First name."),
        Column("last_name", pl.String, "Family name."),
        Column("email", pl.String, "E-mail address.", nullable=True),
        Column("phone", pl.String, "Phone number as the customer wrote it.", nullable=True),
        Column("street", pl.String, "Street line of the postal address.", nullable=True),
        Column("city", pl.String, "City.", nullable=True),
        Column("postcode", pl.String, "Postcode.", nullable=True),
    ),
)

TICKETS = TableSchema(
    name="tickets",
    description="Raw support tickets as the helpdesk exports them (personal data included). Scrubbed before anything is stored.",
    key=("ticket_id",),
    columns=(
        Column("ticket_id", pl.String, "Ticket id."),
        Column("customer_id", pl.String, "Customer who wrote (references customers)."),
        Column("channel", pl.String, "Channel, e.g. email, web_form, chat, mobile_app."),
        Column("created_at", pl.Datetime("us"), "When the ticket was received (UTC).", not_in_future=True),
        Column("subject", pl.String, "Subject line."),
        Column("body", pl.String, "Body as received (text or HTML, quoted history included).", nullable=True),
        Column("order_refs", pl.String, "Order references the helpdesk attached, comma-separated.", nullable=True),
    ),
)

AGENT_LABELS = TableSchema(
    name="agent_labels",
    description="The category a human agent gave each ticket (at validation or at closing), with its time.",
    key=("ticket_id",),
    columns=(
        Column("ticket_id", pl.String, "Ticket (references tickets)."),
        Column("category", pl.String, "Category; the set of categories is whatever the helpdesk uses."),
        Column("agent_id", pl.String, "Agent who labelled it."),
        Column("labelled_at", pl.Datetime("us"), "When the label was given (UTC).", not_in_future=True),
    ),
)

RAW_TABLES = (CUSTOMERS, TICKETS, AGENT_LABELS)

# What the lake keeps of a ticket: no raw text, only the scrubbed and cleaned one.
CLEAN_TICKETS = TableSchema(
    name="tickets_clean",
    description="Tickets after PII scrubbing and cleaning: the only ticket text the platform stores.",
    key=("ticket_id",),
    columns=(
        Column("ticket_id", pl.String, "Ticket id."),
        Column("customer_id", pl.String, "Customer id (no name or contact detail)."),
        Column("channel", pl.String, "Channel."),
        Column("created_at", pl.Datetime("us"), "When the ticket was received (UTC)."),
        Column("month", pl.String, "Month partition, YYYY-MM."),
        Column("subject", pl.String, "Scrubbed subject."),
        Column("body", pl.String, "Scrubbed body without markup, quoted history, signature or greeting."),
        Column("text", pl.String, "What the classifier reads: subject and body."),
        Column("order_refs", pl.String, "Order references.", nullable=True),
        Column("pii_found", pl.Int64, "Personal data items replaced by placeholders.", min_value=0),
    ),
)


def load_raw_tables(directory: str | Path, today: date) -> dict[str, pl.DataFrame]:
    """The user's helpdesk export, each table validated, every reference known."""
    directory = Path(directory)
    tables = load_tables(directory, RAW_TABLES, today=today)
    validate_references(
        tables["tickets"], "customer_id", tables["customers"], "customer_id",
        source=str(find_table_file(directory, "tickets")), table="tickets", parent_table="customers",
    )
    validate_references(
        tables["agent_labels"], "ticket_id", tables["tickets"], "ticket_id",
        source=str(find_table_file(directory, "agent_labels")), table="agent_labels", parent_table="tickets",
    )
    return tables


def markdown() -> str:
    """Documentation of the raw tables users can bring (a section of docs/triage.md)."""
    parts = []
    for schema in (*RAW_TABLES, CLEAN_TICKETS):
        parts += [f"### {schema.name}", "", schema.description, "", f"Key: `{', '.join(schema.key)}`", "", schema.markdown(), ""]
    return "\n".join(parts)
