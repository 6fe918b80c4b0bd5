"""Weekly scoring (Monday morning), its monitoring checks, and the CRM push (Monday afternoon).

With no champion yet, the latest challenger scores in shadow: its rows carry `shadow = true` and its
version, the reports are computed on them, and the CRM push skips them."""

import dagster as dg
import polars as pl

from assets.churn.model import MODEL_KEY, store
from assets.churn.partitions import weekly_snapshots
from assets.common import DUCKDB_POOL, OWNERS, check_result, frame_schema, table, worst
from lakehouse.churn.pipeline import crm_batch, score_week, serving_model
from lakehouse.churn.settings import CASE, ChurnSettings
from resources import CrmResource, LakehouseResource, MlflowResource, SourcesResource

SCORES_KEY = dg.AssetKey([CASE, "churn_scores"])


@dg.multi_asset(
    name="churn_scores",
    specs=[
        dg.AssetSpec(
            SCORES_KEY,
            deps=[dg.AssetKey([CASE, "churn_features"]), dg.AssetKey([CASE, "champion_model"])],
            group_name=CASE,
            kinds={"lightgbm", "mlflow", "parquet"},
            owners=OWNERS[CASE],
            skippable=True,  # no model registered yet: nothing to score, a green run
            description=(
                "Churn scores of every active customer at the weekly snapshot by the `champion` model (with none "
                "yet, by the latest challenger in shadow: `shadow` = true, never published): score, risk tier, the "
                "action guide for the tier and the top reasons (SHAP). A run over a range of weeks (a backfill) "
                "scores them in order, each against the week before; its checks report the worst week. With no "
                "model registered it skips and says so."
            ),
        )
    ],
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
    can_subset=True,
    check_specs=[
        dg.AssetCheckSpec(
            "prediction_volume",
            asset=SCORES_KEY,
            description=(
                "Weekly prediction volume within the seed's bounds (`volume_bounds` for `volume_bounds_base` "
                "customers) scaled to the customer base (`customer_base`, else last week's volume)."
            ),
        ),
        dg.AssetCheckSpec(
            "score_shift",
            asset=SCORES_KEY,
            additional_deps=[MODEL_KEY],
            description=(
                "Score distribution vs the scoring version's reference week: a Kolmogorov-Smirnov statistic above "
                "`max_score_shift_ks` alerts; PSI reported."
            ),
        ),
        dg.AssetCheckSpec(
            "feature_drift",
            asset=SCORES_KEY,
            additional_deps=[MODEL_KEY],
            description=(
                "The model's inputs of the week vs the champion's reference weeks (the last `feature_drift."
                "reference_weeks` of its test period), or with no champion yet vs the weeks before: a feature whose "
                "Kolmogorov-Smirnov statistic exceeds `feature_drift.max_ks` with a p-value under `feature_drift."
                "alpha` alerts (WARN); every feature's statistic in the metadata."
            ),
        ),
        dg.AssetCheckSpec(
            "usage_volume",
            asset=SCORES_KEY,
            additional_deps=[dg.AssetKey([CASE, "stg_churn__usage_weekly"])],
            description=(
                "The raw usage of the week before the snapshot (active customer-days) vs the mean of the "
                "`usage_volume.trailing_weeks` complete weeks before it: under `usage_volume.min_ratio` of it with a "
                "count that unlikely by chance (exact conditional Poisson test, p under `usage_volume.alpha`) "
                "alerts (WARN); customers with usage and logins in the metadata."
            ),
        ),
        dg.AssetCheckSpec(
            "scoring_latency",
            asset=SCORES_KEY,
            description="Scoring of the whole customer base within the seed's budget (`scoring_latency_budget_s`).",
        ),
    ],
)
def churn_scores(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource, sources: SourcesResource
):
    settings = sources.settings(ChurnSettings)
    model = serving_model(mlflow.registry(lakehouse), settings)
    if model is None:
        context.log.warning(
            f"no version of {settings.registered_model_name} is registered: nothing to score "
            "(train one with the churn_monthly_training job)"
        )
        return
    if model.choice.shadow:
        context.log.warning(f"no champion yet: scoring with {model.choice.label}; {model.choice.note}")
    weeks = [score_week(store(lakehouse), model, key, settings) for key in context.partition_keys]
    scores = weeks[-1].batch.scores
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
    selected = {key.name for key in context.selected_asset_check_keys}
    checks = [worst(outcomes) for outcomes in zip(*(w.checks for w in weeks), strict=True)]
    yield dg.MaterializeResult(
        asset_key=SCORES_KEY,
        check_results=[check_result(c, SCORES_KEY) for c in checks if c.name in selected],
        metadata={
            "dagster/row_count": sum(w.batch.scores.height for w in weeks),
            "dagster/column_schema": frame_schema(scores),
            "model_version": model.version,
            "model": model.choice.label,
            "shadow": model.choice.shadow,
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
    output_required=False,
    description=(
        "Upserts the week's scores, tiers, actions and reasons into the CRM by customer id (idempotent). "
        "Shadow scores (no champion yet) are never pushed: the step skips and says why."
    ),
)
def churn_crm_push(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, crm: CrmResource):
    records, skipped = crm_batch(store(lakehouse), context.partition_key)
    if skipped:
        context.log.warning(f"CRM push skipped: {skipped}")
        return
    pushed = crm.client(lakehouse).upsert(records)
    yield dg.MaterializeResult(metadata={"records_pushed": pushed, "target": crm.target})
