"""Point-in-time features of every transaction (batch), and the online store warmed from the lake."""

import dagster as dg

from assets.common import OWNERS
from lakehouse.fraud.pipeline import build_features, warm_online_store
from lakehouse.fraud.settings import CASE, FraudSettings
from resources import LakehouseResource, RedisResource, SourcesResource

TRANSACTIONS = dg.AssetKey([CASE, "transactions"])


@dg.asset(
    key=[CASE, "transaction_features"],
    deps=[TRANSACTIONS],
    group_name=CASE,
    kinds={"polars", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "Every registry feature of every transaction, point in time, one Parquet file per day: exact windows per "
        "customer (up to 30 days), card, merchant, device, IP and payee IBAN; merchant and category history over whole "
        "days with fraud counted from labels known at decision time (after `features.label_delay_days`); the "
        "customer's profile. The online store computes the same definitions incrementally in Redis."
    ),
)
def transaction_features(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, sources: SourcesResource
) -> dg.MaterializeResult:
    table = build_features(lakehouse.lake, sources.settings(FraudSettings))
    context.log.info(f"{len(table.features)} features for {table.rows:,} transactions over {len(table.days)} days")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.rows,
            "features": len(table.features),
            "left_out": ", ".join(table.left_out) or "none",
            "days": f"{table.days[0]} .. {table.days[-1]} ({len(table.days)})",
        }
    )


@dg.asset(
    key=[CASE, "online_features"],
    deps=[TRANSACTIONS],
    group_name=CASE,
    kinds={"redis"},
    owners=OWNERS[CASE],
    description=(
        "The Redis feature store warmed from the lake (transactions, their fraud labels and the decision log of the "
        "days the windows reach) through the consumer's idempotent updates, then marked warm with its epoch key. The "
        "service re-warms the same way by itself when it finds the store without that key."
    ),
)
def online_features(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, redis: RedisResource, sources: SourcesResource
) -> dg.MaterializeResult:
    client = redis.client()
    try:
        warmed = warm_online_store(lakehouse.lake, client, sources.settings(FraudSettings))
    finally:
        client.close()
    context.log.info(
        f"applied {warmed['applied']:,} of {warmed['transactions']:,} transactions to {redis.url.split('@')[-1]}"
    )
    return dg.MaterializeResult(metadata=warmed)
