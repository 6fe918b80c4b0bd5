"""The raw table of the fraud case: what the generator writes and what users may bring.

Only `transactions` is needed to train and serve. Its optional columns (device, IP, payee
IBAN, country, category, geography, fraud pattern) may be left out of a user's file: the
features and rules that need them are then left out too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import polars as pl

from lakehouse.common.plausibility import Limits
from lakehouse.common.raw_source import RawBatch, Request
from lakehouse.common.schema import Column, RowRule, TableSchema, validate_frame
from lakehouse.fraud.settings import FraudSettings


def _together(a: str, b: str) -> RowRule:
    return RowRule(f"{a} and {b} are both given or both empty", pl.col(a).is_null() == pl.col(b).is_null(), (a, b))


def _optional_columns() -> tuple[Column, ...]:
    """Device, IP, payee IBAN, country, category and the two pairs of coordinates: a file may lack them."""
    return (
        Column(
            "device_id",
            pl.String,
            "Optional. Device fingerprint; empty for card-present payments.",
            nullable=True,
            identifier=True,
        ),
        Column(
            "ip",
            pl.String,
            "Optional. Client IP address; empty for card-present payments.",
            nullable=True,
            identifier=True,
        ),
        Column(
            "payee_iban",
            pl.String,
            "Optional. IBAN credited (merchant settlement account, or the payee of a transfer).",
            nullable=True,
            identifier=True,
        ),
        Column("country", pl.String, "Optional. ISO country where the payment was made.", nullable=True),
        Column(
            "category", pl.String, "Optional. Merchant category (its known fraud rate is a feature).", nullable=True
        ),
        Column(
            "lat",
            pl.Float64,
            "Optional. Latitude of the payment (the merchant's, for card-present payments).",
            nullable=True,
            min_value=-90,
            max_value=90,
        ),
        Column("lon", pl.Float64, "Optional. Longitude of the payment.", nullable=True, min_value=-180, max_value=180),
        Column(
            "customer_lat",
            pl.Float64,
            "Optional. Latitude of the customer's home (distance to the payment).",
            nullable=True,
            min_value=-90,
            max_value=90,
        ),
        Column(
            "customer_lon",
            pl.Float64,
            "Optional. Longitude of the customer's home.",
            nullable=True,
            min_value=-180,
            max_value=180,
        ),
    )


def transactions_schema(settings: FraudSettings) -> TableSchema:
    """The transactions table, with the channel vocabulary and the plausibility limits of the settings."""
    table = TableSchema(
        name="transactions",
        description="One row per payment attempt, with its fraud label (confirmed chargeback or investigation).",
        key=("tx_id",),
        columns=(
            Column("tx_id", pl.String, "Transaction id (unique)."),
            Column(
                "ts",
                pl.Datetime("ms"),
                "When the payment was attempted (UTC; times with a zone are converted).",
                not_in_future=True,
            ),
            Column("customer_id", pl.String, "Paying customer.", identifier=True),
            Column("card_id", pl.String, "Card or account used.", identifier=True),
            Column(
                "merchant_id",
                pl.String,
                "Merchant or terminal (for transfers: where the transfer was initiated).",
                identifier=True,
            ),
            Column(
                "channel",
                pl.String,
                "How the payment was made (`channels` in the settings).",
                allowed=settings.channels,
            ),
            Column(
                "amount",
                pl.Float64,
                f"Amount, in the settings' currency ({settings.economics.currency} by default); zero for an "
                "authorisation check.",
                min_value=0,
                quantity=True,
            ),
            *_optional_columns(),
            Column(
                "is_fraud",
                pl.Boolean,
                "Label: the payment was fraudulent (known `features.label_delay_days` after it).",
            ),
            Column(
                "fraud_pattern",
                pl.String,
                "Optional, diagnostic only (never a feature): the fraud scenario.",
                nullable=True,
            ),
        ),
        rules=(_together("lat", "lon"), _together("customer_lat", "customer_lon")),
    )
    return table.with_limits(Limits.of(settings))


OPTIONAL = (
    "device_id",
    "ip",
    "payee_iban",
    "country",
    "category",
    "lat",
    "lon",
    "customer_lat",
    "customer_lon",
    "fraud_pattern",
)
PAIRS = (("lat", "lon"), ("customer_lat", "customer_lon"))


def missing_pair(columns) -> tuple[str, str] | None:
    """A coordinate column given without its partner: (the one given, the one missing)."""
    present = set(columns)
    for a, b in PAIRS:
        if (a in present) != (b in present):
            return (a, b) if a in present else (b, a)
    return None


def generated(overrides: Mapping, request: Request) -> RawBatch:
    """The raw-source seam's generator side: the selected days of the synthetic payments world (`tx_per_day`,
    `seed`, `signal_strength`), through the same schema as a user's file."""
    from lakehouse.fraud.world import WorldConfig, build_entities, generate_day

    world = WorldConfig.from_env().with_(**overrides)
    entities = build_entities(world)
    schema = transactions_schema(request.settings)
    frames = {}
    for day in request.keys:
        request.log(
            f"generating {day}: ~{world.tx_per_day:,} payments, fraud rate {world.fraud_rate:.2%}, seed {world.seed}"
        )
        frame = generate_day(world, date.fromisoformat(day), entities)
        frames[day] = validate_frame(frame, schema.restricted(frame.columns), source="generator", today=request.today)
    origin = f"generator (seed {world.seed}, {world.tx_per_day:,} tx/day, fraud rate {world.fraud_rate:.2%})"
    return RawBatch(frames, origin)


def markdown(settings: FraudSettings | None = None) -> str:
    """The documentation of the fraud raw table (in docs/fraud.md)."""
    schema = transactions_schema(settings or FraudSettings())
    return "\n".join(
        [
            f"### {schema.name}",
            "",
            schema.description,
            "",
            f"Key: `{', '.join(schema.key)}`. Optional columns may be absent: {', '.join(f'`{c}`' for c in OPTIONAL)} "
            "(coordinates come in pairs).",
            "",
            schema.markdown(),
        ]
    )


if __name__ == "__main__":
    print(markdown())
