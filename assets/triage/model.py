"""Frozen hold-out, training set (validated tickets), classifier, promotion gate, champion."""

from datetime import UTC, datetime

import dagster as dg

from assets.common import OWNERS, champion_asset, frame_schema, gate_check_result, rendered, table
from assets.triage.raw import CLEAN_KEY, LABELS_KEY
from lakehouse.triage.pipeline import (
    CASE,
    build_holdout,
    build_training_set,
    category_mix,
    latest_month_end,
    read_months,
    train_challenger,
)
from lakehouse.triage.settings import TriageSettings
from resources import LakehouseResource, MlflowResource, SourcesResource

HOLDOUT_KEY = dg.AssetKey([CASE, "frozen_holdout"])
TRAINING_KEY = dg.AssetKey([CASE, "training_set"])
MODEL_KEY = dg.AssetKey([CASE, "model"])
CHAMPION_KEY = dg.AssetKey([CASE, "champion_model"])


class CutOffConfig(dg.Config):
    as_of: str | None = None  # labels known before this date (exclusive); default: end of the latest stored month


class HoldoutConfig(CutOffConfig):
    refresh: bool = False  # rebuild even though a frozen hold-out exists (it is otherwise never changed)


def _as_of(value: str | None, lakehouse: LakehouseResource) -> datetime:
    return datetime.fromisoformat(value) if value else latest_month_end(lakehouse.lake)


@dg.asset(
    key=HOLDOUT_KEY,
    deps=[CLEAN_KEY, LABELS_KEY],
    group_name=CASE,
    kinds={"polars", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "The frozen hold-out: `training.holdout_share` of labelled tickets by a stable hash of the ticket id, never "
        "trained on. Built once; re-materializing keeps it unless `refresh` is set, so champion and challenger are "
        "compared on the same tickets."
    ),
)
def frozen_holdout(
    context: dg.AssetExecutionContext, config: HoldoutConfig, lakehouse: LakehouseResource, sources: SourcesResource
) -> dg.MaterializeResult:
    settings, lake = sources.settings(TriageSettings), lakehouse.lake
    if lake.exists(CASE, "frozen_holdout") and not config.refresh:
        holdout, status = lake.read(CASE, "frozen_holdout"), "kept"
    else:
        as_of = _as_of(config.as_of, lakehouse)
        holdout = build_holdout(read_months(lake, "tickets_clean"), read_months(lake, "agent_labels"), as_of, settings)
        lake.write(holdout, CASE, "frozen_holdout")
        status = "built"
    context.log.info(f"frozen hold-out {status}: {holdout.height} tickets")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": holdout.height,
            "dagster/column_schema": frame_schema(holdout),
            "status": status,
            "share": f"{settings.training.holdout_share:.0%}",
            "months": f"{holdout['month'].min()} .. {holdout['month'].max()}" if holdout.height else "none",
            "categories": holdout["category"].n_unique(),
        }
    )


@dg.asset(
    key=TRAINING_KEY,
    deps=[CLEAN_KEY, LABELS_KEY, HOLDOUT_KEY],
    group_name=CASE,
    kinds={"polars", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "Tickets with a validated agent label known at the cut-off, outside the frozen hold-out: every one by default, "
        "or the most recent `training.tickets`; the `training.validation` period (or the newest "
        "`training.validation_share`) is the validation set of the gate, the calibration and the out-of-scope rule. "
        "Scrubbed text only."
    ),
)
def training_set(
    context: dg.AssetExecutionContext, config: CutOffConfig, lakehouse: LakehouseResource, sources: SourcesResource
) -> dg.MaterializeResult:
    settings, lake = sources.settings(TriageSettings), lakehouse.lake
    as_of = _as_of(config.as_of, lakehouse)
    df = build_training_set(read_months(lake, "tickets_clean"), read_months(lake, "agent_labels"), as_of, settings)
    counts = dict(df.group_by("split").len().iter_rows())
    if not counts.get("train") or not counts.get("validation"):
        raise dg.Failure(
            f"before {as_of:%Y-%m-%d} there are {counts.get('train', 0)} training and "
            f"{counts.get('validation', 0)} validation tickets: both are needed"
        )
    lake.write(df, CASE, "training_set")
    mix = category_mix(df["category"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "dagster/column_schema": frame_schema(df),
            "as_of": as_of.isoformat(),
            "train": counts["train"],
            "validation": counts["validation"],
            "months": f"{df['month'].min()} .. {df['month'].max()}",
            "categories": mix.height,
            "category_mix": table(mix),
        }
    )


@dg.asset(
    key=MODEL_KEY,
    deps=[TRAINING_KEY, HOLDOUT_KEY],
    group_name=CASE,
    kinds={"pytorch", "onnx", "mlflow"},
    owners=OWNERS[CASE],
    description=(
        "all-MiniLM-L6-v2 fine-tuned with a softmax head (SetFit's differentiable head, end to end) within the step "
        "budget, then a logistic head refitted on the served int8 body; temperature, out-of-scope threshold and "
        "auto-route threshold (to `auto_precision_target`) fitted on the validation set; served as ONNX. Scored on the "
        "validation set and on the frozen hold-out beside the champion; logged to MLflow as a pyfunc model, registered "
        "with alias `challenger`."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "promotion_gate",
            asset=MODEL_KEY,
            blocking=True,
            description=(
                "Validation macro-F1 >= `gate.min_macro_f1`, auto-route precision >= `gate.min_auto_precision`, "
                "and not worse than the champion on the frozen hold-out (tolerance `gate.not_worse_tolerance`)."
            ),
        )
    ],
)
def model(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource, sources: SourcesResource
):
    settings = sources.settings(TriageSettings)
    registry = mlflow.registry(lakehouse)
    result = train_challenger(
        lakehouse.lake.read(CASE, "training_set"),
        lakehouse.lake.read(CASE, "frozen_holdout"),
        lakehouse.lake,
        registry,
        settings,
        run_name=f"triage-{datetime.now(UTC):%Y%m%d-%H%M%S}",
        log=context.log.info,
    )
    gate = gate_check_result(registry, result.gate, MODEL_KEY)
    return dg.MaterializeResult(metadata=rendered(result.metadata()), check_results=[gate])


champion_model = champion_asset(
    CASE,
    MODEL_KEY,
    lambda settings: settings.registered_model_name,
    TriageSettings,
    description=(
        "Moves the MLflow alias `champion` to the challenger that passed the promotion gate, or keeps the champion."
    ),
)
