"""Weekly scoring (Monday morning), its monitoring checks, and the CRM push (Monday afternoon)."""


import dagster as dg
import polars as pl

from assets.churn.partitions import weekly_snapshots
from assets.common import DUCKDB_POOL, OWNERS, frame_schema, markdown_table
from lakehouse.churn.config import CASE, SETTINGS, WorldConfig
from lakehouse.churn.model import load_model, score
from lakehouse.churn.monitoring import scoring_checks
from resources import CrmResource, LakehouseResource, MlflowResource

SCORES_KEY = dg.AssetKey([CASE, "churn_scores"])


def _snapshot(partition_key: str) -> tuple[str, str]:
    return ("snapshot_date", partition_key)


@dg.asset(
    key=SCORES_KEY,
    deps=[dg.AssetKey([CASE, "churn_features"]), dg.AssetKey([CASE, "champion_model"])],
    partitions_def=weekly_snapshots,
    group_name=CASE,
    kinds={"lightgbm", "mlflow", "parquet"},
    owners=OWNERS[CASE],
    pool=DUCKDB_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            "prediction_volume",
            asset=SCORES_KEY,
            description="Weekly prediction volume within the seed's [13,000, 16,000], scaled to the configured customer base.",
        ),
        dg.AssetCheckSpec(
            "score_shift",
            asset=SCORES_KEY,
            additional_deps=[dg.AssetKey([CASE, "churn_model"])],
            description=(
                f"Score distribution vs the champion's reference week: Kolmogorov-Smirnov statistic above "
                f"{SETTINGS.max_score_shift_ks} alerts; PSI reported."
            ),
        ),
        dg.AssetCheckSpec(
            "scoring_latency",
            asset=SCORES_KEY,
            description=f"Batch scoring of the whole customer base within the seed's budget ({SETTINGS.scoring_latency_budget_s:.0f} s).",
        ),
    ],
    description=(
        "Churn scores of every active customer at the weekly snapshot, by the `champion` model: "
        "score, risk tier, the action guide for the tier and the top reasons (SHAP)."
    ),
)
def churn_scores(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    snapshot = context.partition_key
    features = lakehouse.query("select * from churn_features where snapshot_date = ? order by customer_id", [snapshot])
    booster, version = load_model(mlflow.registry(lakehouse), SETTINGS)
    batch = score(booster, features, SETTINGS, model_version=version)
    lakehouse.lake.write(batch.scores, CASE, "churn_scores", _snapshot(snapshot))
    tiers = batch.scores.group_by("risk_tier", "action").agg(customers=pl.len(), mean_score=pl.col("score").mean()).sort("mean_score", descending=True)
    reference = lakehouse.lake.read(CASE, "reference_scores")["score"].to_numpy()
    checks = [
        dg.AssetCheckResult(check_name=c.name, passed=c.passed, severity=dg.AssetCheckSeverity.WARN, metadata=c.metadata)
        for c in scoring_checks(batch, reference, WorldConfig.from_env().customers, SETTINGS)
    ]
    return dg.MaterializeResult(
        check_results=checks,
        metadata={
            "dagster/row_count": batch.scores.height,
            "dagster/column_schema": frame_schema(batch.scores),
            "model_version": version,
            "scoring_seconds": batch.seconds,
            "action_guide": dg.MetadataValue.md(markdown_table(tiers)),
            "top_risk": dg.MetadataValue.md(markdown_table(batch.scores.sort("score", descending=True).head(10).drop("action"))),
        }
    )


def _scores(lakehouse: LakehouseResource, partition_key: str) -> pl.DataFrame:
    return lakehouse.lake.read(CASE, "churn_scores", _snapshot(partition_key))


@dg.asset(
    key=[CASE, "crm_push"],
    deps=[SCORES_KEY],
    partitions_def=weekly_snapshots,
    group_name=CASE,
    kinds={"salesforce"},
    owners=OWNERS[CASE],
    description="Upserts the week's scores, tiers, actions and reasons into the CRM by customer id (idempotent).",
)
def churn_crm_push(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, crm: CrmResource) -> dg.MaterializeResult:
    scores = _scores(lakehouse, context.partition_key)
    records = scores.rename({"customer_id": "external_id"}).with_columns(pl.col("snapshot_date").cast(pl.String)).to_dicts()
    pushed = crm.client(lakehouse).upsert(records)
    return dg.MaterializeResult(metadata={"records_pushed": pushed, "target": crm.target})
