"""The raw tables of the churn case: what the generator writes and what users may bring.

`customers`, `usage_daily` and `renewals` are required; `support_tickets` and `invoices` are
optional: without one of them the features it feeds are zero for everyone (the model then
learns nothing from them). Vocabularies (sector, size, tier, plan, ticket category) are the
user's own; the settings say how they rank (lakehouse/churn/settings.py, `vocabulary`).
Money is in the case's currency (`economics.currency`).
"""

from __future__ import annotations

from datetime import date

import polars as pl

from lakehouse.common.schema import Column, RowRule, TableSchema, validate_references
from lakehouse.common.sources import CaseSource, load_table

CUSTOMERS = TableSchema(
    name="customers",
    description="One row per customer (company profile and subscription terms at signup).",
    key=("customer_id",),
    columns=(
        Column("customer_id", pl.String, "External id, also the CRM key."),
        Column("signup_date", pl.Date, "First day of the subscription.", not_in_future=True),
        Column("sector", pl.String, "Business sector."),
        Column("company_size", pl.String, "Size band (ranked by `vocabulary.sizes`)."),
        Column("employees", pl.Int64, "Head count (or seats).", min_value=1),
        Column("tier", pl.String, "Subscription tier (ranked by `vocabulary.tiers`)."),
        Column("plan", pl.String, "Billing period; plans in `vocabulary.annual_plans` renew yearly, others monthly."),
        Column("mrr", pl.Float64, "Monthly recurring revenue, in the case's currency.", min_value=0),
    ),
)

USAGE_DAILY = TableSchema(
    name="usage_daily",
    description="One row per customer and day with at least one login.",
    key=("customer_id", "activity_date"),
    columns=(
        Column("customer_id", pl.String, "Customer."),
        Column("activity_date", pl.Date, "Day of activity.", not_in_future=True),
        Column("logins", pl.Int64, "Logins (or sessions) that day.", min_value=0),
        Column("session_minutes", pl.Float64, "Total session duration in minutes.", min_value=0),
        Column("features_used", pl.Int64, "Distinct product features used.", min_value=0),
        Column(
            "key_feature_mask", pl.Int64, "Bit k set when key feature k was used (`key_features` bits).", min_value=0
        ),
    ),
)

SUPPORT_TICKETS = TableSchema(
    name="support_tickets",
    description="Optional. Support tickets with their nature and satisfaction score (CSAT, given at closing).",
    key=("ticket_id",),
    columns=(
        Column("ticket_id", pl.String, "Ticket id."),
        Column("customer_id", pl.String, "Customer.", identifier=True),
        Column("opened_at", pl.Datetime("us"), "When the ticket was opened.", not_in_future=True),
        Column("category", pl.String, "Nature of the request (`vocabulary.incident_categories` count as incidents)."),
        Column(
            "closed_at", pl.Datetime("us"), "When it was closed; empty while open.", nullable=True, not_in_future=True
        ),
        Column("csat", pl.Int64, "Satisfaction 1-5; empty when not answered.", nullable=True, min_value=1, max_value=5),
    ),
    rules=(
        RowRule(
            "closed_at is not before opened_at", pl.col("closed_at") >= pl.col("opened_at"), ("closed_at", "opened_at")
        ),
    ),
)

INVOICES = TableSchema(
    name="invoices",
    description="Optional. Invoices with payment and dispute facts, each known from its own date.",
    key=("invoice_id",),
    columns=(
        Column("invoice_id", pl.String, "Invoice id."),
        Column("customer_id", pl.String, "Customer.", identifier=True),
        Column("issue_date", pl.Date, "Issue date.", not_in_future=True),
        Column("due_date", pl.Date, "Payment due date."),
        Column("amount", pl.Float64, "Amount, in the case's currency.", min_value=0),
        Column("paid_date", pl.Date, "Payment date; empty while unpaid.", nullable=True, not_in_future=True),
        Column("disputed_at", pl.Date, "Dispute date; empty when never disputed.", nullable=True, not_in_future=True),
    ),
    rules=(
        RowRule(
            "due_date is not before issue_date", pl.col("due_date") >= pl.col("issue_date"), ("due_date", "issue_date")
        ),
        RowRule(
            "disputed_at is not before issue_date",
            pl.col("disputed_at") >= pl.col("issue_date"),
            ("disputed_at", "issue_date"),
        ),
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
OPTIONAL_TABLES = ("support_tickets", "invoices")


def load_raw_tables(source: CaseSource, today: date) -> dict[str, pl.DataFrame | None]:
    """The user's churn tables, each validated, with every customer reference known. An optional table
    the source lacks comes back as None (the lake keeps what it has)."""
    source.check_no_misnamed_files([s.name for s in RAW_TABLES])
    loaded = {s.name: load_table(source, s, today=today, required=s.name not in OPTIONAL_TABLES) for s in RAW_TABLES}
    customers = loaded["customers"].frame
    for name, table in loaded.items():
        if name != "customers" and table is not None:
            validate_references(
                table.frame,
                "customer_id",
                customers,
                "customer_id",
                source=table.label,
                table=name,
                parent_table="customers",
            )
    return {name: None if table is None else table.frame for name, table in loaded.items()}


def markdown() -> str:
    """The documentation of the churn raw tables (docs/churn_raw_tables.md)."""
    parts = [
        "# Churn raw tables",
        "",
        'Bring your own data: list the churn case in your sources file (README, "Bring your own data") with the '
        "folder that holds one file per table below, or a mapping from your files. `support_tickets` and "
        "`invoices` are optional. Every file is validated before anything is written; a bad file stops the run "
        "with one error naming the file, the column and example rows, and the lake keeps its previous content. "
        "Every `customer_id` must exist in `customers`.",
        "",
    ]
    for schema in RAW_TABLES:
        optional = " (optional)" if schema.name in OPTIONAL_TABLES else ""
        parts += [
            f"## {schema.name}{optional}",
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
