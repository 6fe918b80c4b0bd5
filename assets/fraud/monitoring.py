"""The live decision log, compacted per day, and its monitoring checks."""

import dagster as dg

from assets.common import OWNERS, check_result, frame_schema
from assets.fraud.partitions import daily
from lakehouse.fraud.pipeline import compact_decision_log
from lakehouse.fraud.settings import CASE, FraudSettings
from resources import LakehouseResource, MlflowResource, SourcesResource

LOG_KEY = dg.AssetKey([CASE, "decision_log"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            LOG_KEY,
            deps=[dg.AssetKey([CASE, "champion_model"])],
            group_name=CASE,
            kinds={"redis", "parquet"},
            owners=OWNERS[CASE],
            skippable=True,  # no champion: nothing decided, nothing to check
            description=(
                "Every decision of the day as the service logged it (stream -> consumer group -> Parquet parts), one "
                "row per transaction, ready to join with chargeback labels; checked against the champion's figures "
                "(no champion: nothing to check, the step says so)."
            ),
        )
    ],
    name="fraud__decision_log",
    partitions_def=daily,
    can_subset=True,  # so that the checks, like the log, may be skipped
    check_specs=[
        dg.AssetCheckSpec(
            "feature_drift",
            asset=LOG_KEY,
            description=(
                "Layer-2 inputs of the day vs the champion's test window: a KS statistic above "
                "`monitoring.max_feature_drift_ks` on any feature alerts."
            ),
        ),
        dg.AssetCheckSpec(
            "layer3_share",
            asset=LOG_KEY,
            description="Share of decisions reaching layer 3 within `monitoring.layer3_share_band`.",
        ),
        dg.AssetCheckSpec(
            "decision_rate",
            asset=LOG_KEY,
            description=(
                "Review + block rate within a factor `monitoring.max_flag_rate_ratio` of the champion's "
                "test-window rate."
            ),
        ),
    ],
)
def decision_log(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource, sources: SourcesResource
):
    compacted = compact_decision_log(
        lakehouse.lake, mlflow.registry(lakehouse), sources.settings(FraudSettings), context.partition_key
    )
    if compacted is None:
        context.log.warning("no champion: the service decides nothing and there is no decision log to check")
        return
    log, outcomes = compacted
    counts = log.group_by("decision").len().sort("decision")
    yield dg.MaterializeResult(
        asset_key=LOG_KEY,
        metadata={
            "dagster/row_count": log.height,
            "dagster/column_schema": frame_schema(log.head(0)),
            **{f"decisions_{d}": int(n) for d, n in counts.iter_rows()},
            "degraded": int(log["degraded"].sum()) if log.height else 0,
        },
    )
    for outcome in outcomes:
        yield check_result(outcome, LOG_KEY)
