"""The live decision log, compacted per day, and its monitoring checks."""


import dagster as dg

from assets.common import OWNERS, frame_schema
from assets.fraud.partitions import daily
from lakehouse.fraud.config import CASE, SETTINGS
from lakehouse.fraud.monitoring import decision_rate, feature_drift, layer3_share
from lakehouse.fraud.online import read_decision_log
from resources import LakehouseResource, MlflowResource

LOG_KEY = dg.AssetKey([CASE, "decision_log"])


@dg.asset(
    key=LOG_KEY,
    deps=[dg.AssetKey([CASE, "champion_model"])],
    partitions_def=daily,
    group_name=CASE,
    kinds={"redis", "parquet"},
    owners=OWNERS[CASE],
    check_specs=[
        dg.AssetCheckSpec("feature_drift", asset=LOG_KEY, description=f"Layer-2 inputs of the day vs the test days of training: KS above {SETTINGS.max_feature_drift_ks} on any feature alerts."),
        dg.AssetCheckSpec("layer3_share", asset=LOG_KEY, description=f"Share of decisions reaching layer 3 within {list(SETTINGS.layer3_share_band)}."),
        dg.AssetCheckSpec("decision_rate", asset=LOG_KEY, description=f"Review + block rate within a factor {SETTINGS.max_flag_rate_ratio} of the champion's test-day rate."),
    ],
    description=(
        "Every decision of the day as the service logged it (stream -> consumer group -> Parquet parts), one row per "
        "transaction, ready to join with chargeback labels."
    ),
)
def decision_log(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource):
    day = context.partition_key
    log = read_decision_log(lakehouse.paths.lake / CASE / "decision_log_parts", day)
    lakehouse.lake.write(log, CASE, "decision_log", ("day", day))
    registry = mlflow.registry(lakehouse)
    name = SETTINGS.registered_model_name
    expected = registry.version_metrics(name, registry.alias_version(name, "champion"))["flag_rate"]
    reference = lakehouse.lake.read(CASE, "reference_features")
    counts = log.group_by("decision").len().sort("decision")
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": log.height,
            "dagster/column_schema": frame_schema(log.head(0)),
            **{f"decisions_{d}": n for d, n in counts.iter_rows()},
            "degraded": int(log["degraded"].sum()) if log.height else 0,
        }
    )
    for outcome in (feature_drift(reference, log, SETTINGS), layer3_share(log, SETTINGS), decision_rate(log, expected, SETTINGS)):
        yield dg.AssetCheckResult(
            check_name=outcome.name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={k: (dg.MetadataValue.md(v) if k == "top" else v) for k, v in outcome.metadata.items()},
        )
