"""The raw tables of the triage case (what users may bring) and the scrubbed tables the lake keeps."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import polars as pl

from lakehouse.common.plausibility import Limits
from lakehouse.common.raw_source import RawBatch, Request
from lakehouse.common.schema import Column, TableSchema, check_limits, validate_frame
from lakehouse.common.table_rules import not_before

CUSTOMERS = TableSchema(
    name="customers",
    description=(
        "The CRM's customers (optional). Read to recognise their names and contact details in tickets; never "
        "stored in the lake. Without it, personal data is still found by its patterns and checksums, but names "
        "only when a request gives them."
    ),
    key=("customer_id",),
    columns=(
        Column("customer_id", pl.String, "Customer id."),
        Column("first_name", pl.String, "First name.", nullable=True),
        Column("last_name", pl.String, "Family name.", nullable=True),
        Column("email", pl.String, "E-mail address.", nullable=True),
        Column("phone", pl.String, "Phone number as the customer wrote it.", nullable=True),
        Column("street", pl.String, "Street line of the postal address.", nullable=True),
        Column("city", pl.String, "City.", nullable=True),
        Column("postcode", pl.String, "Postcode.", nullable=True),
    ),
)
CUSTOMER_OPTIONAL = ("first_name", "last_name", "email", "phone", "street", "city", "postcode")

TICKETS = TableSchema(
    name="tickets",
    description=(
        "Raw support tickets as the helpdesk exports them (personal data included). Scrubbed before anything is stored."
    ),
    key=("ticket_id",),
    columns=(
        Column("ticket_id", pl.String, "Ticket id."),
        Column(
            "customer_id",
            pl.String,
            "Customer who wrote (references customers when that table is given); optional.",
            nullable=True,
            identifier=True,
        ),
        Column("channel", pl.String, "Channel, e.g. email, web_form, chat, mobile_app; optional.", nullable=True),
        Column(
            "created_at",
            pl.Datetime("us"),
            "When the ticket was received (UTC); its month is its partition.",
            not_in_future=True,
        ),
        Column("subject", pl.String, "Subject line (or the whole message when the helpdesk has no subject)."),
        Column("body", pl.String, "Body as received (text or HTML, quoted history included); optional.", nullable=True),
        Column(
            "order_refs", pl.String, "Order references the helpdesk attached, comma-separated; optional.", nullable=True
        ),
    ),
)
TICKET_OPTIONAL = ("customer_id", "channel", "body", "order_refs")

AGENT_LABELS = TableSchema(
    name="agent_labels",
    description=(
        "The category a human agent gave each ticket (at validation or at closing), with its time. The categories are "
        "whatever the helpdesk uses; map the helpdesk's own 'none of these' label to `out_of_scope`."
    ),
    key=("ticket_id",),
    columns=(
        Column("ticket_id", pl.String, "Ticket (references tickets)."),
        Column("category", pl.String, "Category."),
        Column("agent_id", pl.String, "Agent who labelled it; optional.", nullable=True, identifier=True),
        Column(
            "labelled_at",
            pl.Datetime("us"),
            "When the label was given (UTC): a training only learns labels known at its cut-off.",
            not_in_future=True,
        ),
    ),
)
LABEL_OPTIONAL = ("agent_id",)

RAW_TABLES = (TICKETS, AGENT_LABELS, CUSTOMERS)

# What the lake keeps of a ticket: no raw text, only the scrubbed and cleaned one.
CLEAN_TICKETS = TableSchema(
    name="tickets_clean",
    description="Tickets after PII scrubbing and cleaning: the only ticket text the platform stores.",
    key=("ticket_id",),
    columns=(
        Column("ticket_id", pl.String, "Ticket id."),
        Column("customer_id", pl.String, "Customer id (no name or contact detail).", nullable=True),
        Column("channel", pl.String, "Channel.", nullable=True),
        Column("created_at", pl.Datetime("us"), "When the ticket was received (UTC)."),
        Column("month", pl.String, "Month partition, YYYY-MM."),
        Column("subject", pl.String, "Scrubbed subject."),
        Column("body", pl.String, "Scrubbed body without markup, quoted history, signature or greeting."),
        Column("text", pl.String, "What the classifier reads: subject and body."),
        Column("order_refs", pl.String, "Order references.", nullable=True),
        Column("pii_found", pl.Int64, "Personal data items replaced by placeholders.", min_value=0),
    ),
)


def with_optional_columns(frame: pl.DataFrame, schema: TableSchema) -> pl.DataFrame:
    """`frame` with every column of `schema` (optional ones a file lacks are null), in schema order."""
    missing = [pl.lit(None, dtype=c.polars_dtype).alias(c.name) for c in schema.columns if c.name not in frame.columns]
    return frame.with_columns(missing).select(schema.column_names)


def check_raw_tables(tickets: pl.DataFrame, labels: pl.DataFrame, settings, labels_of: Mapping[str, str]) -> None:
    """What the case's settings add to the schemas: its plausibility limits (ids, dates), and no label given
    before its ticket was received."""
    limits = Limits.of(settings)
    check_limits(tickets, TICKETS.with_limits(limits), source=labels_of["tickets"])
    check_limits(labels, AGENT_LABELS.with_limits(limits), source=labels_of["agent_labels"])
    not_before(
        labels,
        "labelled_at",
        tickets,
        "created_at",
        "ticket_id",
        source=labels_of["agent_labels"],
        table="agent_labels",
        parent_table="tickets",
        limits=limits,
    )


def generated(overrides: Mapping, request: Request) -> RawBatch:
    """The raw-source seam's generator side: the selected months of the synthetic helpdesk (`tickets_per_month`,
    `seed`, `vague_rate`, `mislabel_rate`, `category_weights`), through the same schemas and rules as a user's
    export."""
    from lakehouse.triage.world import WorldConfig, generate_customers, generate_month

    drills = dict(overrides)
    weights = drills.pop("category_weights", None)
    world = WorldConfig.from_env().with_(**drills)
    customers = generate_customers(world)
    months = [generate_month(world, date.fromisoformat(f"{k[:7]}-01"), customers, weights) for k in request.keys]
    limits = Limits.of(request.settings)
    tables = {
        "tickets": pl.concat([t for t, _ in months]),
        "agent_labels": pl.concat([lab for _, lab in months]),
        "customers": customers,
    }
    for schema in RAW_TABLES:
        tables[schema.name] = validate_frame(
            tables[schema.name], schema.with_limits(limits), source="generator", today=request.today
        )
    check_raw_tables(tables["tickets"], tables["agent_labels"], request.settings, dict.fromkeys(tables, "generator"))
    origin = f"generator (seed {world.seed}, {world.tickets_per_month} tickets/month)"
    return RawBatch(tables, origin, labels=dict.fromkeys(tables, "generator"))


def markdown() -> str:
    """Documentation of the raw tables users can bring (a section of docs/triage.md)."""
    parts = []
    for schema in (*RAW_TABLES, CLEAN_TICKETS):
        parts += [
            f"### {schema.name}",
            "",
            schema.description,
            "",
            f"Key: `{', '.join(schema.key)}`",
            "",
            schema.markdown(),
            "",
        ]
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown())
