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

from lakehouse.common.plausibility import Bound, Limits
from lakehouse.common.raw_source import CaseRaw, RawBatch, Request
from lakehouse.common.schema import Column, RowRule, TableSchema, validate_frame, validate_references
from lakehouse.common.sources import CaseSource, load_table
from lakehouse.common.table_rules import not_before, within_parent_limit

# A seat works at most the 1,440 minutes of a day, and logs in at most once a minute.
PER_SEAT_A_DAY = Bound(max=1440, per="employees")

CUSTOMERS = TableSchema(
    name="customers",
    description="One row per customer (company profile and subscription terms at signup).",
    key=("customer_id",),
    columns=(
        Column("customer_id", pl.String, "External id, also the CRM key."),
        Column("signup_date", pl.Date, "First day of the subscription.", not_in_future=True, before_data=True),
        Column("sector", pl.String, "Business sector."),
        Column("company_size", pl.String, "Size band (ranked by `vocabulary.sizes`)."),
        Column("employees", pl.Int64, "Head count (or seats).", min_value=1, quantity=True),
        Column("tier", pl.String, "Subscription tier (ranked by `vocabulary.tiers`)."),
        Column("plan", pl.String, "Billing period; plans in `vocabulary.annual_plans` renew yearly, others monthly."),
        Column("mrr", pl.Float64, "Monthly recurring revenue, in the case's currency.", min_value=0, quantity=True),
    ),
)

USAGE_DAILY = TableSchema(
    name="usage_daily",
    description="One row per customer and day with at least one login.",
    key=("customer_id", "activity_date"),
    columns=(
        Column("customer_id", pl.String, "Customer."),
        Column("activity_date", pl.Date, "Day of activity.", not_in_future=True),
        Column("logins", pl.Int64, "Logins (or sessions) that day.", min_value=0, limit=PER_SEAT_A_DAY),
        Column("session_minutes", pl.Float64, "Total session duration in minutes.", min_value=0, limit=PER_SEAT_A_DAY),
        Column("features_used", pl.Int64, "Distinct product features used.", min_value=0, quantity=True),
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
        Column("amount", pl.Float64, "Amount, in the case's currency.", min_value=0, quantity=True),
        Column("paid_date", pl.Date, "Payment date; empty while unpaid.", nullable=True, not_in_future=True),
        Column("disputed_at", pl.Date, "Dispute date; empty when never disputed.", nullable=True, not_in_future=True),
    ),
    rules=(
        RowRule(
            "due_date is not before issue_date", pl.col("due_date") >= pl.col("issue_date"), ("due_date", "issue_date")
        ),
        RowRule(
            "paid_date is not before issue_date",
            pl.col("paid_date") >= pl.col("issue_date"),
            ("paid_date", "issue_date"),
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


# The date of each table's rows, which cannot come before the customer's signup.
FACT_DATES = {
    "usage_daily": "activity_date",
    "support_tickets": "opened_at",
    "invoices": "issue_date",
    "renewals": "renewal_date",
}


def raw_tables(settings=None) -> tuple[TableSchema, ...]:
    """The raw tables measured against the case's plausibility limits (the defaults without settings)."""
    limits = Limits.of(settings) if settings is not None else Limits()
    unknown = limits.unknown_columns(RAW_TABLES)
    if unknown:
        raise ValueError(
            f"{limits.where('columns')}: {', '.join(unknown)} name no column of the churn tables "
            f"({', '.join(s.name for s in RAW_TABLES)})"
        )
    return tuple(s.with_limits(limits) for s in RAW_TABLES)


def load_raw_tables(source: CaseSource, today: date, settings=None) -> dict[str, pl.DataFrame | None]:
    """The user's churn tables, each validated, with every customer reference known and every fact after
    its customer's signup. An optional table the source lacks comes back as None (the lake keeps what it has)."""
    schemas = raw_tables(settings)
    source.check_no_misnamed_files([s.name for s in schemas])
    loaded = {s.name: load_table(source, s, today=today, required=s.name not in OPTIONAL_TABLES) for s in schemas}
    tables = {name: None if table is None else table.frame for name, table in loaded.items()}
    check_across_tables(tables, {name: t.label for name, t in loaded.items() if t is not None}, schemas[0].limits)
    return tables


def check_across_tables(tables: dict[str, pl.DataFrame | None], labels: dict[str, str], limits: Limits) -> None:
    """Every customer reference known; no fact before its customer's signup; usage within a seat's day."""
    customers = tables["customers"]
    for name, frame in tables.items():
        if name == "customers" or frame is None:
            continue
        where = {"source": labels[name], "table": name, "parent_table": "customers"}
        validate_references(frame, "customer_id", customers, "customer_id", **where)
        not_before(frame, FACT_DATES[name], customers, "signup_date", "customer_id", **where, limits=limits)
    for column in ("session_minutes", "logins"):
        bound = limits.bound("usage_daily", USAGE_DAILY.column(column))
        if bound is not None and bound.per is not None:
            within_parent_limit(
                tables["usage_daily"],
                column,
                customers,
                "customer_id",
                bound,
                source=labels["usage_daily"],
                table="usage_daily",
                parent_table="customers",
                setting=f"`usage_daily.{column}` under {limits.where('columns')}",
            )


def load_files(source: CaseSource, request: Request) -> RawBatch:
    """The raw-source seam's file side: the user's five tables."""
    return RawBatch(load_raw_tables(source, request.today, request.settings), str(source.folder))


def generated(overrides, request: Request) -> RawBatch:
    """The raw-source seam's generator side: the synthetic SaaS base (`customers`, `seed`, `signal_strength`),
    through the same schemas and rules as a user's files."""
    from lakehouse.churn.world import WorldConfig, generate_world

    world = WorldConfig().with_(**overrides)
    request.log(f"generating the churn world: {world.customers:,} customers, seed {world.seed}")
    frames = generate_world(world, progress=world.customers >= 10_000)
    schemas = raw_tables(request.settings)
    tables = {s.name: validate_frame(frames[s.name], s, source="generator", today=request.today) for s in schemas}
    check_across_tables(tables, dict.fromkeys(tables, "generator"), schemas[0].limits)
    return RawBatch(tables, f"generator (seed {world.seed}, {world.customers:,} customers)")


RAW = CaseRaw("churn", load_files, generated)


def markdown() -> str:
    """The documentation of the churn raw tables (docs/churn_raw_tables.md)."""
    parts = [
        "# Churn raw tables",
        "",
        'Bring your own data: list the churn case in your sources file (README, "Bring your own data") with the '
        "folder that holds one file per table below, or a mapping from your files. `support_tickets` and "
        "`invoices` are optional. Every file is validated before anything is written; a bad file stops the run "
        "with one error naming the file, the column and example rows, and the lake keeps its previous content. "
        "Every `customer_id` must exist in `customers`, and no usage day, ticket, invoice or renewal may come before "
        "its customer's `signup_date`. Values must be plausible (`plausibility` in the case's settings: amounts below "
        "1e9, dates from 1900 and not 20 years before `calendar.start`, usage within a seat's day); ids follow the "
        "platform's id rule (docs/platform.md).",
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
