"""Weekly scoring (Monday morning), its monitoring checks, and the CRM push (Monday afternoon)."""

import dagster as dg
import polars as pl

from assets.churn.model import store
from assets.churn.partitions import weekly_snapshots
from assets.common import DUCKDB_POOL, OWNERS, check_result, frame_schema, table, worst
from lakehouse.churn.pipeline import SNAPSHOT, crm_records, score_week
from lakehouse.churn.settings import CASE, ChurnSettings
from resources import CrmResource, LakehouseResource, MlflowResource

SCORES_KEY = dg.AssetKey([CASE, "churn_scores"])
SETTINGS = ChurnSettings()


@dg.asset(
    key=SCORES_KEY,
    deps=[dg.AssetKey([CASE, "churn_features"]), dg.AssetKey([CASE, "champion_model"])],
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=CASE,
    kinds={"lightgbm", "mlflow", "parquet"},
    owners=OWNERS[CASE],
    pool=DUCKDB_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            "prediction_volume",
            asset=SCORES_KEY,
            description="Weekly prediction volume within the seed's [13,000, 16,000] for 15,000 customers, scaled to the customer base (setting `customer_base`, else last week's volume).",
        ),
        dg.AssetCheckSpec(
            "score_shift",
            asset=SCORES_KEY,
            additional_deps=[dg.AssetKey([CASE, "churn_model"])],
            description=f"Score distribution vs the champion's reference week: Kolmogorov-Smirnov statistic above {SETTINGS.max_score_shift_ks} alerts; PSI reported.",
        ),
        dg.AssetCheckSpec(
            "scoring_latency",
            asset=SCORES_KEY,
            description=f"Batch scoring of the whole customer base within the seed's budget ({SETTINGS.scoring_latency_budget_s:.0f} s).",
        ),
    ],
    description=(
        "Churn scores of every active customer at the weekly snapshot, by the `champion` model: "
        "score, risk tier, the action guide for the tier and the top reasons (SHAP). A run over a range of "
        "weeks (a backfill) scores them in order, each against the week before; its checks report the worst week."
    ),
)
def churn_scores(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    settings, registry = ChurnSettings(), mlflow.registry(lakehouse)
    weeks = [score_week(store(lakehouse), registry, key, settings) for key in context.partition_keys]
    latest = weeks[-1]
    scores = latest.batch.scores
    tiers = (
        scores.group_by("risk_tier", "action")
        .agg(customers=pl.len(), mean_score=pl.col("score").mean())
        .sort("mean_score", descending=True)
    )
    by_week = pl.DataFrame(
        {
            "week": context.partition_keys,
            "customers": [w.batch.scores.height for w in weeks],
            "seconds": [round(w.batch.seconds, 2) for w in weeks],
        }
    )
    return dg.MaterializeResult(
        check_results=[check_result(worst(outcomes)) for outcomes in zip(*(w.checks for w in weeks))],
        metadata={
            "dagster/row_count": sum(w.batch.scores.height for w in weeks),
            "dagster/column_schema": frame_schema(scores),
            "model_version": latest.model_version,
            "weeks": table(by_week),
            "action_guide": table(tiers),
            "top_risk": table(scores.sort("score", descending=True).head(10).drop("action")),
        },
    )


@dg.asset(
    key=[CASE, "crm_push"],
    deps=[SCORES_KEY],
    partitions_def=weekly_snapshots,
    group_name=CASE,
    kinds={"salesforce"},
    owners=OWNERS[CASE],
    description="Upserts the week's scores, tiers, actions and reasons into the CRM by customer id (idempotent).",
)
def churn_crm_push(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, crm: CrmResource
) -> dg.MaterializeResult:
    scores = lakehouse.lake.read(CASE, "churn_scores", (SNAPSHOT, context.partition_key))
    pushed = crm.client(lakehouse).upsert(crm_records(scores))
    return dg.MaterializeResult(metadata={"records_pushed": pushed, "target": crm.target})
