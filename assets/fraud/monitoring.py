"""The live decision log, compacted per day, and its monitoring checks."""

import dagster as dg

from assets.common import OWNERS, check_result, frame_schema
from assets.fraud.partitions import daily
from lakehouse.fraud.pipeline import compact_decision_log
from lakehouse.fraud.settings import CASE, FraudSettings
from resources import LakehouseResource, MlflowResource

LOG_KEY = dg.AssetKey([CASE, "decision_log"])
MONITORING = FraudSettings().monitoring


@dg.asset(
    key=LOG_KEY,
    deps=[dg.AssetKey([CASE, "champion_model"])],
    partitions_def=daily,
    group_name=CASE,
    kinds={"redis", "parquet"},
    owners=OWNERS[CASE],
    check_specs=[
        dg.AssetCheckSpec(
            "feature_drift",
            asset=LOG_KEY,
            description=f"Layer-2 inputs of the day vs the test window of training: KS above {MONITORING.max_feature_drift_ks} on any feature alerts.",
        ),
        dg.AssetCheckSpec(
            "layer3_share",
            asset=LOG_KEY,
            description=f"Share of decisions reaching layer 3 within [{MONITORING.layer3_share_band[0]:.0%}, {MONITORING.layer3_share_band[1]:.0%}].",
        ),
        dg.AssetCheckSpec(
            "decision_rate",
            asset=LOG_KEY,
            description=f"Review + block rate within a factor {MONITORING.max_flag_rate_ratio} of the champion's test-window rate.",
        ),
    ],
    description=(
        "Every decision of the day as the service logged it (stream -> consumer group -> Parquet parts), one row per "
        "transaction, ready to join with chargeback labels."
    ),
)
def decision_log(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource):
    log, outcomes = compact_decision_log(
        lakehouse.lake, mlflow.registry(lakehouse), FraudSettings(), context.partition_key
    )
    counts = log.group_by("decision").len().sort("decision")
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": log.height,
            "dagster/column_schema": frame_schema(log.head(0)),
            **{f"decisions_{d}": int(n) for d, n in counts.iter_rows()},
            "degraded": int(log["degraded"].sum()) if log.height else 0,
        }
    )
    for outcome in outcomes:
        yield check_result(outcome, LOG_KEY)
