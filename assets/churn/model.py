"""Training set, LightGBM model, Go/No-Go gate and promotion to champion."""


from datetime import datetime, timezone

import dagster as dg
import polars as pl

from assets.common import DUCKDB_POOL, OWNERS, champion_asset, frame_schema, markdown_table
from lakehouse.churn.config import CASE, SEED_MODEL_REFERENCE, SETTINGS
from lakehouse.churn.model import LABEL, log_model, passes_gate, train
from lakehouse.common.registry import CHALLENGER
from resources import LakehouseResource, MlflowResource

FEATURES_KEY = dg.AssetKey([CASE, "churn_features"])
LABELS_KEY = dg.AssetKey([CASE, "churn_labels"])


@dg.asset(
    key=[CASE, "training_set"],
    deps=[FEATURES_KEY, LABELS_KEY],
    group_name=CASE,
    kinds={"duckdb", "parquet"},
    owners=OWNERS[CASE],
    pool=DUCKDB_POOL,
    description="Every featured snapshot joined with its 30-day churn label (matured or not).",
)
def churn_training_set(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    df = lakehouse.query(
        f"""
        select f.*, l.{LABEL}, l.matured_30d
        from churn_features f
        join churn_labels l using (snapshot_date, customer_id)
        order by snapshot_date, customer_id
        """
    )
    lakehouse.lake.write(df, CASE, "training_set")
    matured = df.filter(pl.col("matured_30d"))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "dagster/column_schema": frame_schema(df),
            "snapshots": df["snapshot_date"].n_unique(),
            "matured_rows": matured.height,
            "churn_rate_matured": float(matured[LABEL].mean()) if matured.height else None,
        }
    )


@dg.asset(
    key=[CASE, "churn_model"],
    deps=[dg.AssetKey([CASE, "training_set"])],
    group_name=CASE,
    kinds={"lightgbm", "mlflow"},
    owners=OWNERS[CASE],
    description=(
        "LightGBM churn model with out-of-time validation (last 4 months of snapshots held out), "
        "logged to MLflow and registered with alias `challenger`."
    ),
)
def churn_model(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    training_set = lakehouse.lake.read(CASE, "training_set")
    trained = train(training_set, SETTINGS)
    registry = mlflow.registry(lakehouse)
    version, run_id = log_model(registry, trained, SETTINGS, run_name=f"churn-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    # The reference score distribution for drift monitoring: the model on the last test snapshot.
    last = trained.test_scores.filter(pl.col("snapshot_date") == pl.col("snapshot_date").max())
    lakehouse.lake.write(last.with_columns(model_version=pl.lit(version)), CASE, "reference_scores")
    m = trained.metrics
    comparison = pl.DataFrame(
        {
            "metric": ["AUC-ROC", "AUC-PR", "Recall@top20%"],
            "ours": [m["auc_roc"], m["auc_pr"], m["recall_top20"]],
            "seed": [SEED_MODEL_REFERENCE["auc_roc"], SEED_MODEL_REFERENCE["auc_pr"], SEED_MODEL_REFERENCE["recall_top20"]],
            "gate": ["-", f"> {SETTINGS.gate_min_auc_pr}", f"> {SETTINGS.gate_min_recall_top}"],
        }
    )
    context.log.info(f"churn model v{version}: {m}")
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "mlflow_run_id": run_id,
            "model_uri": f"models:/{SETTINGS.registered_model_name}/{version}",
            "auc_roc": m["auc_roc"],
            "auc_pr": m["auc_pr"],
            "recall_top20": m["recall_top20"],
            "test_rows": m["rows"],
            "test_positives": m["positives"],
            "split": str(trained.split),
            "metrics": dg.MetadataValue.md(markdown_table(comparison)),
            "shap_importance": dg.MetadataValue.md(markdown_table(trained.shap_importance)),
        }
    )


@dg.asset_check(
    asset=dg.AssetKey([CASE, "churn_model"]),
    name="go_no_go_gate",
    blocking=True,
    description=f"Seed PoC gate: AUC-PR > {SETTINGS.gate_min_auc_pr} and Recall@top20% > {SETTINGS.gate_min_recall_top} on the out-of-time test period.",
)
def churn_go_no_go_gate(lakehouse: LakehouseResource, mlflow: MlflowResource) -> dg.AssetCheckResult:
    registry = mlflow.registry(lakehouse)
    version = registry.alias_version(SETTINGS.registered_model_name, CHALLENGER)
    metrics = registry.version_metrics(SETTINGS.registered_model_name, version)
    passed = passes_gate(metrics, SETTINGS)
    registry.record_gate(SETTINGS.registered_model_name, version, passed, ("GO" if passed else "NO-GO") + f": challenger v{version}")
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=("GO" if passed else "NO-GO") + f": challenger v{version}",
        metadata={
            "model_version": version,
            "value": metrics["auc_pr"],
            "threshold": f"auc_pr > {SETTINGS.gate_min_auc_pr}; recall_top20 > {SETTINGS.gate_min_recall_top}",
            "auc_pr": metrics["auc_pr"],
            "recall_top20": metrics["recall_top20"],
            "decision": "GO" if passed else "NO-GO",
        },
    )


churn_champion = champion_asset(
    CASE,
    dg.AssetKey([CASE, "churn_model"]),
    SETTINGS.registered_model_name,
    description="Moves the MLflow alias `champion` to the challenger that passed the Go/No-Go gate.",
)