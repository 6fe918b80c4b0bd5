"""The raw tables of the churn case: what the generator writes and what users may bring."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from lakehouse.common.schema import Column, TableSchema, find_table_file, load_tables, validate_references
from lakehouse.churn.world import SECTORS, SIZES, TICKET_CATEGORIES, TIERS

CUSTOMERS = TableSchema(
    name="customers",
    description="One row per SME customer (company profile and subscription terms).",
    key=("customer_id",),
    columns=(
        Column("customer_id", pl.String, "External id, also the CRM key."),
        Column("signup_date", pl.Date, "First day of the subscription.", not_in_future=True),
        Column("sector", pl.String, "Business sector.", allowed=SECTORS),
        Column("company_size", pl.String, "Size band.", allowed=SIZES),
        Column("employees", pl.Int64, "Head count.", min_value=1),
        Column("tier", pl.String, "Subscription tier.", allowed=TIERS),
        Column("plan", pl.String, "Billing period.", allowed=("monthly", "annual")),
        Column("mrr_eur", pl.Float64, "Monthly recurring revenue in EUR.", min_value=0),
    ),
)

USAGE_DAILY = TableSchema(
    name="usage_daily",
    description="One row per customer and day with at least one login.",
    key=("customer_id", "activity_date"),
    columns=(
        Column("customer_id", pl.String, "Customer."),
        Column("activity_date", pl.Date, "Day of activity.", not_in_future=True),
        Column("logins", pl.Int64, "Logins that day.", min_value=0),
        Column("session_minutes", pl.Float64, "Total session duration in minutes.", min_value=0),
        Column("features_used", pl.Int64, "Distinct product features used.", min_value=0),
        Column("key_feature_mask", pl.Int64, "Bit k set when key feature k was used (10 key features).", min_value=0, max_value=1023),
    ),
)

SUPPORT_TICKETS = TableSchema(
    name="support_tickets",
    description="Support tickets with their nature and satisfaction score (CSAT, given at closing).",
    key=("ticket_id",),
    columns=(
        Column("ticket_id", pl.String, "Ticket id."),
        Column("customer_id", pl.String, "Customer."),
        Column("opened_at", pl.Datetime("us"), "When the ticket was opened.", not_in_future=True),
        Column("category", pl.String, "Nature of the request.", allowed=TICKET_CATEGORIES),
        Column("closed_at", pl.Datetime("us"), "When it was closed; empty while open.", nullable=True, not_in_future=True),
        Column("csat", pl.Int64, "Satisfaction 1-5; empty when not answered.", nullable=True, min_value=1, max_value=5),
    ),
)

INVOICES = TableSchema(
    name="invoices",
    description="Invoices with payment and dispute facts, each known from its own date.",
    key=("invoice_id",),
    columns=(
        Column("invoice_id", pl.String, "Invoice id."),
        Column("customer_id", pl.String, "Customer."),
        Column("issue_date", pl.Date, "Issue date.", not_in_future=True),
        Column("due_date", pl.Date, "Payment due date."),
        Column("amount_eur", pl.Float64, "Amount in EUR.", min_value=0),
        Column("paid_date", pl.Date, "Payment date; empty while unpaid.", nullable=True, not_in_future=True),
        Column("disputed_at", pl.Date, "Dispute date; empty when never disputed.", nullable=True, not_in_future=True),
    ),
)

RENEWALS = TableSchema(
    name="renewals",
    description="Every end of billing period and its outcome; churn = a non-renewal.",
    key=("customer_id", "renewal_date"),
    columns=(
        Column("customer_id", pl.String, "Customer."),
        Column("renewal_date", pl.Date, "End of the billing period.", not_in_future=True),
        Column("outcome", pl.String, "renewed or churned.", allowed=("renewed", "churned")),
    ),
)

RAW_TABLES = (CUSTOMERS, USAGE_DAILY, SUPPORT_TICKETS, INVOICES, RENEWALS)


def load_raw_tables(directory: str | Path, today: date) -> dict[str, pl.DataFrame]:
    """The user's churn tables, each validated, with every customer reference known."""
    tables = load_tables(directory, RAW_TABLES, today=today)
    for child in (USAGE_DAILY, SUPPORT_TICKETS, INVOICES, RENEWALS):
        validate_references(
            tables[child.name],
            "customer_id",
            tables[CUSTOMERS.name],
            "customer_id",
            source=str(find_table_file(Path(directory), child.name)),
            table=child.name,
            parent_table=CUSTOMERS.name,
        )
    return tables


def markdown() -> str:
    """The documentation of the churn raw tables (docs/churn_raw_tables.md)."""
    parts = [
        "# Churn raw tables",
        "",
        "Bring your own data: put one `<table>.parquet` or `<table>.csv` per table below in a folder and "
        "materialize `churn/customers` (and its siblings) with run config "
        "`ops: {churn_raw: {config: {source_dir: /path/to/folder}}}`. Every file is validated before "
        "anything is written; a bad file stops the run with one error naming the file, the column and "
        "example rows, and the lake keeps its previous content. Every `customer_id` must exist in `customers`.",
        "",
    ]
    for schema in RAW_TABLES:
        parts += [f"## {schema.name}", "", schema.description, "", f"Key: `{', '.join(schema.key)}`", "", schema.markdown(), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown())
