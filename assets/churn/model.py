"""Training set, LightGBM model, Go/No-Go gate, promotion to champion, and any version's evaluation."""

import dagster as dg
import polars as pl

from assets.common import (
    DUCKDB_POOL,
    OWNERS,
    REPORT,
    champion_asset,
    frame_schema,
    gate_check_result,
    number,
    rate,
    table,
)
from lakehouse.churn.evaluation import evaluate_version
from lakehouse.churn.pipeline import ChurnStore, build_training_set, go_no_go, train_challenger
from lakehouse.churn.settings import CASE, SEED_MODEL_REFERENCE, ChurnSettings
from lakehouse.common.display import bar_chart
from lakehouse.common.registry import CHALLENGER, CHAMPION
from lakehouse.common.settings import DateRange
from resources import LakehouseResource, MlflowResource, SourcesResource

FEATURES_KEY = dg.AssetKey([CASE, "churn_features"])
LABELS_KEY = dg.AssetKey([CASE, "churn_labels"])
TRAINING_SET_KEY = dg.AssetKey([CASE, "training_set"])
MODEL_KEY = dg.AssetKey([CASE, "model"])


def store(lakehouse: LakehouseResource) -> ChurnStore:
    return ChurnStore(lakehouse.lake, lakehouse.paths.warehouse)


@dg.asset(
    key=TRAINING_SET_KEY,
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
    deps=[TRAINING_SET_KEY],
    group_name=CASE,
    kinds={"lightgbm", "mlflow"},
    owners=OWNERS[CASE],
    description=(
        "LightGBM churn model with out-of-time validation (the `evaluation` windows of the settings: by default the "
        "last 4 months of snapshots are the test period), logged to MLflow and registered with alias `challenger`, "
        "tagged with what it learnt from (`trained_until`, `data_window`)."
    ),
)
def churn_model(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource, sources: SourcesResource
) -> dg.MaterializeResult:
    settings = sources.settings(ChurnSettings)
    challenger = train_challenger(store(lakehouse), mlflow.registry(lakehouse), settings)
    m = challenger.trained.metrics
    figures = pl.DataFrame(
        {
            "metric": ["AUC-ROC", "AUC-PR", "Recall@top20%"],
            "ours": [m["auc_roc"], m["auc_pr"], m["recall_top20"]],
            "seed": [SEED_MODEL_REFERENCE[k] for k in ("auc_roc", "auc_pr", "recall_top20")],
            "gate_floor": [None, settings.gate.min_auc_pr, settings.gate.min_recall_top],
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
            "trained_until": challenger.trained.split.trained_until(settings.label_days).isoformat(),
            "metrics": table(figures),
            "shap_importance": table(challenger.trained.shap_importance),
        }
    )


@dg.asset_check(
    asset=MODEL_KEY,
    name="go_no_go_gate",
    blocking=True,
    description=(
        "Go/No-Go gate: the seed's PoC floors (`gate.min_auc_pr`, `gate.min_recall_top`) on the out-of-time test "
        "period, and no worse than the champion beyond noise (`gate.comparison`) on the test snapshots after both "
        "models' training cut-offs. A refusal is a WARN: the champion stays and the run stays green."
    ),
)
def churn_go_no_go_gate(
    lakehouse: LakehouseResource, mlflow: MlflowResource, sources: SourcesResource
) -> dg.AssetCheckResult:
    registry = mlflow.registry(lakehouse)
    return gate_check_result(registry, go_no_go(store(lakehouse), registry, sources.settings(ChurnSettings)))


churn_champion = champion_asset(
    CASE,
    MODEL_KEY,
    lambda settings: settings.registered_model_name,
    ChurnSettings,
    description=(
        "Moves the MLflow alias `champion` to the challenger that passed the Go/No-Go gate, or keeps the champion "
        "and says why; `rollback_to` with a `reason` moves it back to an earlier version that passed."
    ),
)


class EvaluationConfig(dg.Config):
    version: str | None = None  # the registered version to evaluate (default: the latest challenger)
    start: str | None = None  # first snapshot of the window (with `end`; default: the version's own test period)
    end: str | None = None  # last snapshot of the window


@dg.asset(
    key=[CASE, "model_evaluation"],
    deps=[MODEL_KEY, TRAINING_SET_KEY, dg.AssetKey([CASE, "champion_model"])],
    tags=REPORT,
    group_name=CASE,
    kinds={"lightgbm", "mlflow"},
    owners=OWNERS[CASE],
    output_required=False,
    description=(
        "Any registered version on any window of the training set, by run config (`version`, `start`, `end`), "
        "without promoting it: AUC-ROC, AUC-PR, Recall@top20% on the matured snapshots, and against the champion "
        "on the same rows after both training cut-offs, with the bootstrap interval over customers. By default "
        "the latest challenger on its own out-of-time test period."
    ),
)
def churn_model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    sources: SourcesResource,
):
    settings = sources.settings(ChurnSettings)
    registry, name = mlflow.registry(lakehouse), settings.registered_model_name
    version = config.version or registry.alias_version(name, CHALLENGER)
    if version is None:
        context.log.warning(f"no version of {name} is registered: nothing to evaluate (train one first)")
        return
    if (config.start is None) != (config.end is None):
        raise dg.Failure("give both `start` and `end` of the window to evaluate on, or neither (its own test period)")
    window = DateRange(start=config.start, end=config.end) if config.start else None
    champion = registry.alias_version(name, CHAMPION)
    evaluation = evaluate_version(lakehouse.lake, registry, settings, version, window, champion)
    comparison = evaluation.comparison
    bars = [(f"v{version}", (evaluation.metrics or {}).get("auc_pr") or 0.0)]
    if comparison is not None and comparison.other is not None:
        bars = [(f"v{version} (same rows)", comparison.challenger), (f"champion v{champion}", comparison.other)]
    role = "champion" if version == champion else f"not the champion (v{champion})" if champion else "no champion yet"
    yield dg.MaterializeResult(
        metadata={
            "model_version": version,
            "role": role,
            "window": f"{evaluation.window.start}..{evaluation.window.end}",
            "trained_until": str(evaluation.trained_until),
            "rows": evaluation.rows,
            "in_sample_rows": evaluation.in_sample_rows,
            "figures": table(evaluation.summary()),
            **({"against_champion": table(evaluation.comparison_table())} if comparison else {}),
            "verdict": comparison.describe() if comparison else f"v{version}: {role}",
            "chart": dg.MetadataValue.md(bar_chart("AUC-PR", bars)),
        }
    )
