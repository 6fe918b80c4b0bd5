"""Batch scores of any loaded days (the champion's, or in shadow the first challenger's), and the evaluation
report of any window for the stored scores or any registered version."""

from datetime import date

import dagster as dg

from assets.common import OWNERS, REPORT, require_partitions
from assets.fraud.partitions import daily
from assets.fraud.reports import evaluation_line, evaluation_metadata
from lakehouse.common.settings import DateRange
from lakehouse.fraud.pipeline import evaluation_report, score_days
from lakehouse.fraud.settings import CASE, FraudSettings
from resources import LakehouseResource, MlflowResource, SourcesResource

SCORES = dg.AssetKey([CASE, "scores"])


@dg.asset(
    key=SCORES,
    deps=[dg.AssetKey([CASE, "champion_model"]), dg.AssetKey([CASE, "transaction_features"])],
    partitions_def=daily,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=CASE,
    kinds={"lightgbm", "xgboost", "parquet"},
    owners=OWNERS[CASE],
    output_required=False,
    description=(
        "Every loaded payment of the selected days scored in batch by the champion exactly as the service would, "
        "with its own rules: the payment's key, time, customer, card and merchant, its label as known now, the "
        "layer reached, each layer's calibrated score, the final probability of fraud, the decision and the model "
        "version; one Parquet file per day. With no champion yet, the latest challenger scores in shadow "
        "(`shadow` true: never published). With no model at all, nothing is written."
    ),
)
def scores(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource, sources: SourcesResource
):
    days = context.partition_keys
    require_partitions(daily, days, FraudSettings)
    scored = score_days(lakehouse.lake, mlflow.registry(lakehouse), sources.settings(FraudSettings), days)
    if scored is None:
        context.log.warning("no model version is registered yet: materialize fraud/model first; nothing scored")
        return
    (context.log.warning if scored.choice.shadow else context.log.info)(
        f"{scored.rows:,} payments of {len(days)} day(s) scored by {scored.choice.label}"
        + (f": {scored.choice.note}" if scored.choice.shadow else "")
    )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": scored.rows,
            "days": len(days),
            "model_version": scored.choice.version,
            "shadow": scored.choice.shadow,
            "scored_by": scored.choice.label,
            "flagged": scored.flagged,
        }
    )


class EvaluationConfig(dg.Config):
    start: str | None = None  # YYYY-MM-DD; default: the settings' test window
    end: str | None = None
    version: str | None = None  # any registered version, scored now on the window; default: the stored scores


@dg.asset(
    key=[CASE, "evaluation"],
    deps=[SCORES],
    tags=REPORT,
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    output_required=False,
    description=(
        "A model's scores over the window you pick (run config `start`, `end`; default: the settings' test window) "
        "against the labels known now: the stored scores (the champion's, or a shadow challenger's), or with run "
        "config `version` any registered version scored now, promoted or not. ROC AUC, average precision, recall "
        "and precision at the thresholds, card precision @ k per day, layer shares, each layer alone, the rules-only "
        "baseline and the money caught, beside the seed's figures."
    ),
)
def evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    sources: SourcesResource,
):
    settings = sources.settings(FraudSettings)
    window = (
        DateRange(start=date.fromisoformat(config.start), end=date.fromisoformat(config.end))
        if config.start and config.end
        else None
    )
    report = evaluation_report(lakehouse.lake, mlflow.registry(lakehouse), settings, window, config.version)
    if report is None:
        context.log.warning("no model version is registered yet: materialize fraud/model first; no report")
        return
    label = f"v{report.version}" + (" (shadow: not promoted)" if report.shadow else "")
    context.log.info(
        f"{label} on {report.window.start}..{report.window.end} ({report.source}): {evaluation_line(report.evaluation)}"
    )
    yield dg.MaterializeResult(
        metadata={
            "window": f"{report.window.start} .. {report.window.end}",
            "model_version": report.version,
            "shadow": report.shadow,
            "scores": report.source,
            **evaluation_metadata(report.evaluation, settings),
        }
    )
