"""Training set, LightGBM model, Go/No-Go gate and promotion to champion."""

import dagster as dg
import polars as pl

from assets.common import DUCKDB_POOL, OWNERS, champion_asset, frame_schema, gate_check_result, number, rate, table
from lakehouse.churn.pipeline import ChurnStore, build_training_set, go_no_go, train_challenger
from lakehouse.churn.settings import CASE, SEED_MODEL_REFERENCE, ChurnSettings
from resources import LakehouseResource, MlflowResource

FEATURES_KEY = dg.AssetKey([CASE, "churn_features"])
LABELS_KEY = dg.AssetKey([CASE, "churn_labels"])
MODEL_KEY = dg.AssetKey([CASE, "churn_model"])
SETTINGS = ChurnSettings()


def store(lakehouse: LakehouseResource) -> ChurnStore:
    return ChurnStore(lakehouse.lake, lakehouse.paths.warehouse)


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
    df = build_training_set(store(lakehouse))
    matured = df.filter(pl.col("matured_30d"))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "dagster/column_schema": frame_schema(df),
            "snapshots": df["snapshot_date"].n_unique(),
            "matured_rows": matured.height,
            "churn_rate_matured": rate(float(matured["churned_30d"].mean()) if matured.height else None),
        }
    )


@dg.asset(
    key=MODEL_KEY,
    deps=[dg.AssetKey([CASE, "training_set"])],
    group_name=CASE,
    kinds={"lightgbm", "mlflow"},
    owners=OWNERS[CASE],
    description=(
        "LightGBM churn model with out-of-time validation (the `evaluation` windows of the settings: by default the "
        "last 4 months of snapshots are the test period), logged to MLflow and registered with alias `challenger`."
    ),
)
def churn_model(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    settings = ChurnSettings()
    challenger = train_challenger(store(lakehouse), mlflow.registry(lakehouse), settings)
    m = challenger.trained.metrics
    comparison = pl.DataFrame(
        {
            "metric": ["AUC-ROC", "AUC-PR", "Recall@top20%"],
            "ours": [f"{m['auc_roc']:.3f}", f"{m['auc_pr']:.3f}", f"{m['recall_top20']:.1%}"],
            "seed": [
                f"{SEED_MODEL_REFERENCE['auc_roc']:.2f}",
                f"{SEED_MODEL_REFERENCE['auc_pr']:.2f}",
                f"{SEED_MODEL_REFERENCE['recall_top20']:.0%}",
            ],
            "gate": ["-", f"> {settings.gate_min_auc_pr}", f"> {settings.gate_min_recall_top:.0%}"],
        }
    )
    context.log.info(f"churn model v{challenger.version}: {m}")
    return dg.MaterializeResult(
        metadata={
            "model_version": challenger.version,
            "mlflow_run_id": challenger.run_id,
            "model_uri": f"models:/{settings.registered_model_name}/{challenger.version}",
            "auc_roc": number(m["auc_roc"]),
            "auc_pr": number(m["auc_pr"]),
            "recall_top20": rate(m["recall_top20"]),
            "test_rows": m["rows"],
            "test_positives": m["positives"],
            "split": str(challenger.trained.split),
            "metrics": table(comparison),
            "shap_importance": table(challenger.trained.shap_importance),
        }
    )


@dg.asset_check(
    asset=MODEL_KEY,
    name="go_no_go_gate",
    blocking=True,
    description=f"Seed PoC gate: AUC-PR > {SETTINGS.gate_min_auc_pr} and Recall@top20% > {SETTINGS.gate_min_recall_top:.0%} on the out-of-time test period.",
)
def churn_go_no_go_gate(lakehouse: LakehouseResource, mlflow: MlflowResource) -> dg.AssetCheckResult:
    settings = ChurnSettings()
    registry = mlflow.registry(lakehouse)
    return gate_check_result(registry, go_no_go(registry, settings))


churn_champion = champion_asset(
    CASE,
    MODEL_KEY,
    lambda settings: settings.registered_model_name,
    ChurnSettings,
    description="Moves the MLflow alias `champion` to the challenger that passed the Go/No-Go gate, or keeps the champion.",
)
