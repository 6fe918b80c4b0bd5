"""The raw tables of the fraud case: what the generator writes and what users may bring.

Only `transactions` is needed to train and serve. Its optional columns (device, IP, payee
IBAN, country, geography, fraud pattern) may be left out of a user's file: the features
and rules that need them are then left out too.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from lakehouse.common.schema import Column, InputDataError, TableSchema, find_table_file, read_table, validate_frame
from lakehouse.fraud.world import CHANNELS

TRANSACTIONS = TableSchema(
    name="transactions",
    description="One row per payment attempt, with its fraud label (confirmed chargeback or investigation).",
    key=("tx_id",),
    columns=(
        Column("tx_id", pl.String, "Transaction id (unique)."),
        Column("ts", pl.Datetime("ms"), "When the payment was attempted (UTC).", not_in_future=True),
        Column("customer_id", pl.String, "Paying customer."),
        Column("card_id", pl.String, "Card or account used."),
        Column("merchant_id", pl.String, "Merchant (for transfers: the merchant the transfer was initiated from)."),
        Column("channel", pl.String, "How the payment was made.", allowed=CHANNELS),
        Column("amount_eur", pl.Float64, "Amount in EUR.", min_value=0.01),
        Column("device_id", pl.String, "Optional. Device fingerprint; empty for card-present payments.", nullable=True),
        Column("ip", pl.String, "Optional. Client IP address; empty for card-present payments.", nullable=True),
        Column("payee_iban", pl.String, "Optional. IBAN credited (merchant settlement account, or the payee of a transfer).", nullable=True),
        Column("country", pl.String, "Optional. ISO country where the payment was made.", nullable=True),
        Column("lat", pl.Float64, "Optional. Latitude of the payment.", nullable=True, min_value=-90, max_value=90),
        Column("lon", pl.Float64, "Optional. Longitude of the payment.", nullable=True, min_value=-180, max_value=180),
        Column("is_fraud", pl.Boolean, "Label: the payment was fraudulent."),
        Column("fraud_pattern", pl.String, "Optional, diagnostic only (never a feature): the fraud scenario.", nullable=True),
    ),
)
OPTIONAL = ("device_id", "ip", "payee_iban", "country", "lat", "lon", "fraud_pattern")


def transactions_schema(columns) -> TableSchema:
    """The transactions schema restricted to the optional columns a file actually has."""
    present = set(columns)
    kept = tuple(c for c in TRANSACTIONS.columns if c.name not in OPTIONAL or c.name in present)
    return TableSchema(TRANSACTIONS.name, TRANSACTIONS.description, kept, TRANSACTIONS.key)


def _check_geography(columns, source: str) -> None:
    if ("lat" in columns) != ("lon" in columns):
        missing = "lat" if "lat" not in columns else "lon"
        raise InputDataError(source, TRANSACTIONS.name, missing, "lat and lon come together: give both columns or neither")


def validate_transactions(df: pl.DataFrame, *, source: str, today: date) -> pl.DataFrame:
    _check_geography(df.columns, source)
    return validate_frame(df, transactions_schema(df.columns), source=source, today=today)


def load_transactions(directory: str | Path, today: date) -> pl.DataFrame:
    """The user's `transactions.parquet` or `transactions.csv`, validated."""
    path = find_table_file(Path(directory), TRANSACTIONS.name)
    try:
        header = list(pl.read_csv(path, n_rows=0).columns if path.suffix.lower() == ".csv" else pl.read_parquet_schema(path).keys())
    except Exception:  # unreadable: read_table reports it with the file name
        header = list(TRANSACTIONS.column_names)
    _check_geography(header, str(path))
    return read_table(path, transactions_schema(header), today=today)


def markdown() -> str:
    """The documentation of the fraud raw table (in docs/fraud.md)."""
    return "\n".join(
        [
            f"### {TRANSACTIONS.name}",
            "",
            TRANSACTIONS.description,
            "",
            f"Key: `{', '.join(TRANSACTIONS.key)}`. Optional columns may be absent: {', '.join(f'`{c}`' for c in OPTIONAL)}.",
            "",
            TRANSACTIONS.markdown(),
        ]
    )


if __name__ == "__main__":
    print(markdown())
