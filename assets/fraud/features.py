"""Point-in-time features of every transaction (batch), and the online store warmed with them."""


import dagster as dg
import polars as pl

from assets.common import OWNERS, frame_schema
from lakehouse.fraud.config import CASE, SETTINGS
from lakehouse.fraud.features import FEATURE_NAMES, batch_features
from lakehouse.fraud.online import warm_store
from lakehouse.fraud.tables import read_days
from resources import LakehouseResource, RedisResource

TRANSACTIONS = dg.AssetKey([CASE, "transactions"])


@dg.asset(
    key=[CASE, "transaction_features"],
    deps=[TRANSACTIONS],
    group_name=CASE,
    kinds={"polars", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "Every registry feature of every transaction, point in time (exact 1 min..24 h windows per customer, card, "
        "merchant, device, IP and payee IBAN; customer profile), one Parquet file per day. The online store computes "
        "the same definitions incrementally in Redis."
    ),
)
def transaction_features(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    tx = read_days(lakehouse.lake, "transactions")
    features = batch_features(tx, SETTINGS).with_columns(day=pl.col("ts").dt.date().cast(pl.String))
    days = features["day"].unique().sort().to_list()
    lakehouse.lake.write_many(
        {(CASE, "transaction_features", ("day", d)): part.drop("day") for (d,), part in features.group_by("day", maintain_order=True)}
    )
    present = [n for n in FEATURE_NAMES if n in features.columns]
    context.log.info(f"{len(present)} features for {features.height:,} transactions over {len(days)} days")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": features.height,
            "dagster/column_schema": frame_schema(features.drop("day").head(0)),
            "features": len(present),
            "left_out": ", ".join(n for n in FEATURE_NAMES if n not in features.columns) or "none",
            "days": f"{days[0]} .. {days[-1]}",
        }
    )


@dg.asset(
    key=[CASE, "online_features"],
    deps=[TRANSACTIONS],
    group_name=CASE,
    kinds={"redis"},
    owners=OWNERS[CASE],
    description=(
        "The Redis feature store warmed with the transaction history, through the same idempotent update the "
        "stream consumer applies (sorted sets per entity trimmed to 24 h with a 24 h TTL; customer profiles)."
    ),
)
def online_features(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, redis: RedisResource) -> dg.MaterializeResult:
    recent = read_days(lakehouse.lake, "transactions").sort("ts", "tx_id")
    end = recent["ts"].max()
    client = redis.client()
    try:
        applied = warm_store(client, recent, SETTINGS)
    finally:
        client.close()
    context.log.info(f"applied {applied:,} of {recent.height:,} transactions to {redis.url}")
    return dg.MaterializeResult(metadata={"transactions": recent.height, "applied": applied, "up_to": str(end)})
