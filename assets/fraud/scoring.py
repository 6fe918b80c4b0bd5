"""Batch scores of any loaded days with the champion, and the evaluation report of any window."""

from datetime import date

import dagster as dg

from assets.common import OWNERS, REPORT, require_partitions
from assets.fraud.partitions import daily
from assets.fraud.reports import evaluation_metadata
from lakehouse.common.settings import DateRange
from lakehouse.fraud.pipeline import evaluation_report, score_days
from lakehouse.fraud.settings import CASE, FraudSettings
from resources import LakehouseResource, MlflowResource

SCORES = dg.AssetKey([CASE, "scores"])


@dg.asset(
    key=SCORES,
    deps=[dg.AssetKey([CASE, "champion_model"]), dg.AssetKey([CASE, "transaction_features"])],
    partitions_def=daily,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=CASE,
    kinds={"lightgbm", "xgboost", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "Every loaded payment of the selected days scored in batch by the champion cascade, exactly as the service "
        "would (layer reached, layer-2 score, final score, decision, model version); one Parquet file per day."
    ),
)
def scores(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    days = context.partition_keys
    require_partitions(daily, days, FraudSettings)
    scored = score_days(lakehouse.lake, mlflow.registry(lakehouse), FraudSettings(), days)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": scored["rows"],
            "days": len(days),
            "model_version": scored["model_version"],
            "flagged": scored["flagged"],
        }
    )


class EvaluationWindow(dg.Config):
    start: str | None = None  # YYYY-MM-DD; default: the settings' test window
    end: str | None = None


@dg.asset(
    key=[CASE, "evaluation"],
    deps=[SCORES],
    tags=REPORT,
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    description=(
        "The champion's stored scores over the window you pick (run config `start`, `end`; default: the settings' test "
        "window) against the labels known now: recall, precision, ROC AUC, average precision, layer shares, the lift "
        "of layer 3 over layer 2 alone, the rules-only baseline and the money caught, beside the seed's figures."
    ),
)
def evaluation(
    context: dg.AssetExecutionContext, config: EvaluationWindow, lakehouse: LakehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    settings = FraudSettings()
    window = (
        DateRange(start=date.fromisoformat(config.start), end=date.fromisoformat(config.end))
        if config.start and config.end
        else None
    )
    result, window, version = evaluation_report(lakehouse.lake, mlflow.registry(lakehouse), settings, window)
    context.log.info(
        f"champion v{version} on {window.start}..{window.end}: AP {result.cascade['average_precision']:.4f}"
    )
    return dg.MaterializeResult(
        metadata={
            "window": f"{window.start} .. {window.end}",
            "model_version": version,
            **evaluation_metadata(result, settings),
        }
    )
