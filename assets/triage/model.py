"""Frozen hold-out, training set (the most recent validated tickets), SetFit model, promotion gate, champion."""


from datetime import datetime, timezone

import dagster as dg
import polars as pl

from assets.common import OWNERS, champion_asset, frame_schema, markdown_table
from assets.triage.tickets import CLEAN_KEY, LABELS_KEY
from lakehouse.common.registry import CHAMPION
from lakehouse.triage.config import CASE, SETTINGS
from lakehouse.triage.data import build_holdout, build_training_set, category_mix, month_end
from lakehouse.triage.model import gate, load_classifier, log_model, score_frame, train_and_evaluate
from resources import LakehouseResource, MlflowResource

HOLDOUT_KEY = dg.AssetKey([CASE, "frozen_holdout"])
TRAINING_KEY = dg.AssetKey([CASE, "training_set"])
MODEL_KEY = dg.AssetKey([CASE, "triage_model"])
CHAMPION_KEY = dg.AssetKey([CASE, "champion_model"])


def read_months(lakehouse: LakehouseResource, name: str) -> pl.DataFrame:
    """Every monthly partition of a lake table."""
    return pl.read_parquet(lakehouse.lake.glob(CASE, name, partitioned=True), hive_partitioning=False)


def _as_of(value: str | None, clean: pl.DataFrame) -> datetime:
    """The cut-off: the given date (exclusive), else the end of the latest stored month."""
    return datetime.fromisoformat(value) if value else month_end(clean["month"].max())


class HoldoutConfig(dg.Config):
    as_of: str | None = None  # labels known before this date; default: end of the latest stored month
    refresh: bool = False  # rebuild even though a frozen hold-out exists (it is otherwise never changed)


@dg.asset(
    key=HOLDOUT_KEY,
    deps=[CLEAN_KEY, LABELS_KEY],
    group_name=CASE,
    kinds={"polars", "parquet"},
    owners=OWNERS[CASE],
    description=(
        f"The frozen hold-out: {SETTINGS.holdout_share:.0%} of labelled tickets by a stable hash of the ticket id, never trained on. "
        "Built once; re-materializing keeps it unless `refresh` is set, so champion and challenger are compared on the same tickets."
    ),
)
def frozen_holdout(context: dg.AssetExecutionContext, config: HoldoutConfig, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    lake = lakehouse.lake
    if lake.exists(CASE, "frozen_holdout") and not config.refresh:
        holdout = lake.read(CASE, "frozen_holdout")
        context.log.info(f"frozen hold-out kept as is ({holdout.height} tickets)")
        status = "kept"
    else:
        clean = read_months(lakehouse, "tickets_clean")
        holdout = build_holdout(clean, read_months(lakehouse, "agent_labels"), _as_of(config.as_of, clean), SETTINGS)
        lake.write(holdout, CASE, "frozen_holdout")
        status = "built"
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": holdout.height,
            "dagster/column_schema": frame_schema(holdout),
            "status": status,
            "months": f"{holdout['month'].min()} .. {holdout['month'].max()}",
            "categories": holdout["category"].n_unique(),
        }
    )


class TrainingSetConfig(dg.Config):
    as_of: str | None = None  # labels known before this date; default: end of the latest stored month
    training_tickets: int = SETTINGS.training_tickets


@dg.asset(
    key=TRAINING_KEY,
    deps=[CLEAN_KEY, LABELS_KEY, HOLDOUT_KEY],
    group_name=CASE,
    kinds={"polars", "parquet"},
    owners=OWNERS[CASE],
    description=(
        f"The {SETTINGS.training_tickets:,} most recent tickets with a validated agent label (queue validations and closing labels), "
        f"outside the frozen hold-out; the newest {SETTINGS.validation_share:.0%} is the gate's validation set. Scrubbed text only."
    ),
)
def training_set(context: dg.AssetExecutionContext, config: TrainingSetConfig, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    clean = read_months(lakehouse, "tickets_clean")
    as_of = _as_of(config.as_of, clean)
    df = build_training_set(clean, read_months(lakehouse, "agent_labels"), as_of, SETTINGS.with_(training_tickets=config.training_tickets))
    if df.is_empty():
        raise dg.Failure(f"no labelled ticket before {as_of}")
    lakehouse.lake.write(df, CASE, "training_set")
    mix = category_mix(df["category"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "dagster/column_schema": frame_schema(df),
            "as_of": as_of.isoformat(),
            "months": f"{df['month'].min()} .. {df['month'].max()}",
            "categories": mix.height,
            "category_mix": dg.MetadataValue.md(markdown_table(mix)),
        }
    )


class ModelConfig(dg.Config):
    max_steps: int = SETTINGS.budget.max_steps  # contrastive fine-tuning steps of the body (the CPU budget)
    batch_size: int = SETTINGS.budget.batch_size


@dg.asset(
    key=MODEL_KEY,
    deps=[TRAINING_KEY, HOLDOUT_KEY],
    group_name=CASE,
    kinds={"pytorch", "mlflow"},
    owners=OWNERS[CASE],
    description=(
        "SetFit on the packaged all-MiniLM-L6-v2 body, trained within a CPU budget; evaluated on the newest validated tickets and "
        "on the frozen hold-out (with the current champion on the same hold-out); logged to MLflow as a pyfunc model, registered "
        "with alias `challenger`."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "promotion_gate",
            asset=MODEL_KEY,
            blocking=True,
            description=(
                f"Validation macro-F1 >= {SETTINGS.gate_min_macro_f1}, auto-route precision at > {SETTINGS.confidence_threshold} "
                f">= {SETTINGS.gate_min_auto_precision}, and frozen hold-out macro-F1 not worse than the champion's "
                f"(tolerance {SETTINGS.not_worse_tolerance})."
            ),
        )
    ],
)
def triage_model(context: dg.AssetExecutionContext, config: ModelConfig, lakehouse: LakehouseResource, mlflow: MlflowResource):
    from dataclasses import replace

    settings = SETTINGS.with_(budget=replace(SETTINGS.budget, max_steps=config.max_steps, batch_size=config.batch_size))
    data = lakehouse.lake.read(CASE, "training_set")
    holdout = lakehouse.lake.read(CASE, "frozen_holdout")
    registry = mlflow.registry(lakehouse)
    champion_f1, champion_version = None, registry.alias_version(settings.registered_model_name, CHAMPION)
    if champion_version is not None:
        champion, _ = load_classifier(registry, settings, CHAMPION)
        champion_f1 = score_frame(champion, holdout, settings.confidence_threshold)["macro_f1"]
    trained = train_and_evaluate(data.filter(pl.col("split") == "train"), data.filter(pl.col("split") == "validation"), holdout, settings)
    info = {"training_from": str(data["created_at"].min()), "training_to": str(data["created_at"].max()), "champion_at_training": champion_version or "none"}
    examples = data.filter(pl.col("split") == "validation").head(3)["text"].to_list()
    version, run_id = log_model(registry, trained, info, examples, settings, run_name=f"triage-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    if champion_f1 is not None:
        registry.client.log_metric(run_id, "champion_holdout_macro_f1", champion_f1)
    mix = category_mix(data.filter(pl.col("split") == "train")["category"])
    lakehouse.lake.write(mix, CASE, "training_mix", ("model_version", version))
    metrics = {**trained.validation, "holdout_macro_f1": trained.holdout["macro_f1"]}
    decision = gate(metrics, champion_f1, settings)
    v, h = trained.validation, trained.holdout
    table = pl.DataFrame(
        {
            "set": ["validation (newest)", "frozen hold-out"],
            "macro_f1": [v["macro_f1"], h["macro_f1"]],
            "auto_rate": [v["auto_rate"], h["auto_rate"]],
            "auto_precision": [v["auto_precision"], h["auto_precision"]],
            "tickets": [v["tickets"], h["tickets"]],
        }
    )
    context.log.info(f"triage model v{version}: {metrics}; gate {decision.summary}")
    registry.record_gate(settings.registered_model_name, version, decision.passed, decision.summary)
    gate_result = dg.AssetCheckResult(
        check_name="promotion_gate",
        passed=decision.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"challenger v{version}: {decision.summary}",
        metadata={
            "model_version": version,
            "value": v["macro_f1"],
            "threshold": f"macro_f1 >= {settings.gate_min_macro_f1}; auto_precision >= {settings.gate_min_auto_precision}; not worse than champion",
            "auto_precision": v["auto_precision"],
            "holdout_macro_f1": h["macro_f1"],
            "champion_holdout_macro_f1": champion_f1 if champion_f1 is not None else "none",
            "decision": decision.summary,
        },
    )
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "mlflow_run_id": run_id,
            "model_uri": f"models:/{settings.registered_model_name}/{version}",
            "macro_f1": v["macro_f1"],
            "auto_rate": v["auto_rate"],
            "auto_precision": v["auto_precision"],
            "holdout_macro_f1": h["macro_f1"],
            "champion_holdout_macro_f1": champion_f1 if champion_f1 is not None else "none",
            "train_seconds": trained.train_seconds,
            "training_rows": trained.training_rows,
            "max_steps": settings.budget.max_steps,
            "metrics": dg.MetadataValue.md(markdown_table(table)),
        },
        check_results=[gate_result],
    )


champion_model = champion_asset(
    CASE, MODEL_KEY, SETTINGS.registered_model_name,
    description="Moves the MLflow alias `champion` to the challenger that passed the promotion gate.",
)