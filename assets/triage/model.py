"""Frozen hold-out, training set (validated tickets), classifier, promotion gate, champion, and the evaluation
of any registered version on any months (`model_evaluation`)."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from assets.common import OWNERS, REPORT, champion_asset, frame_schema, gate_check_result, rate, rendered, table
from assets.triage.raw import CLEAN_KEY, LABELS_KEY
from lakehouse.common.display import bar_chart, pct
from lakehouse.triage.lifecycle import RATES, train_challenger
from lakehouse.triage.pipeline import (
    CASE,
    build_holdout,
    build_training_set,
    category_mix,
    coverage_warning,
    latest_month_end,
    read_months,
    split_coverage,
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
    coverage = split_coverage(df)
    warning = coverage_warning(coverage, settings)
    if warning:
        context.log.warning(warning)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": df.height,
            "dagster/column_schema": frame_schema(df),
            "as_of": as_of.isoformat(),
            "train": counts["train"],
            "validation": counts["validation"],
            "validation_split": "period" if settings.training.validation else settings.training.validation_split,
            "months": f"{df['month'].min()} .. {df['month'].max()}",
            "categories": mix.height,
            **{k: len(v) for k, v in coverage.items()},
            **({"warning": warning} if warning else {}),
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
        "validation set, on the frozen hold-out, and beside the champion on the hold-out tickets neither learnt from; "
        "logged to MLflow as a pyfunc model, registered with alias `challenger`, with the tickets it learnt from."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "promotion_gate",
            asset=MODEL_KEY,
            blocking=True,
            description=(
                "Floors: validation macro-F1 >= `gate.min_macro_f1`, validation auto-route precision >= "
                "`gate.min_auto_precision`. Comparison: accuracy on the frozen hold-out tickets neither model learnt "
                "from, not below the champion's beyond noise (paired bootstrap interval over tickets, "
                "`gate.comparison`). A refusal is a WARN: the champion stays, the run stays green."
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
    if not result.gate.passed:
        context.log.warning(result.gate.summary())
    metadata = result.metadata()
    figures = {k: rate(metadata[k]) for k in RATES if k in metadata}
    return dg.MaterializeResult(
        metadata={**rendered(metadata), **figures, "metrics": table(metadata["metrics"], percent=RATES)},
        check_results=[gate],
    )


champion_model = champion_asset(
    CASE,
    MODEL_KEY,
    lambda settings: settings.registered_model_name,
    TriageSettings,
    description=(
        "Moves the MLflow alias `champion` to the challenger that passed the promotion gate, or keeps the champion."
    ),
)


class EvaluationConfig(dg.Config):
    version: str | None = None  # the registered version to evaluate; default: the latest challenger
    against: str | None = None  # a second version on the same tickets; default: the champion (none if it is `version`)
    months: list[str] | None = None  # YYYY-MM; default: the months `evaluation` picks among the labelled ones


@dg.asset(
    key=[CASE, "model_evaluation"],
    deps=[CLEAN_KEY, LABELS_KEY, MODEL_KEY],
    tags=REPORT,
    group_name=CASE,
    kinds={"onnx", "polars"},
    owners=OWNERS[CASE],
    output_required=False,
    description=(
        "Any registered version on any labelled months, by run config (`version`, `against`, `months`), without "
        "promoting or publishing anything: both versions classify the same tickets, those neither learnt from, and the "
        "first's accuracy gain over the second gets its paired bootstrap interval (`gate.comparison`). By default the "
        "latest challenger against the champion on the months `evaluation` picks."
    ),
)
def triage_model_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    sources: SourcesResource,
):
    from lakehouse.common.registry import CHALLENGER, CHAMPION
    from lakehouse.triage.lifecycle import evaluate_versions, learnt_by
    from lakehouse.triage.pipeline import MONTH
    from lakehouse.triage.registered import load_classifier

    settings, lake, registry = sources.settings(TriageSettings), lakehouse.lake, mlflow.registry(lakehouse)
    name = settings.registered_model_name
    version = config.version or registry.alias_version(name, CHALLENGER)
    if version is None:
        context.log.warning(f"no version of {name} is registered: nothing to evaluate (train one first)")
        return
    against = config.against or registry.alias_version(name, CHAMPION)
    versions = [version] + ([against] if against and against != version else [])
    stored = [m for m in lake.partitions(CASE, "agent_labels", MONTH) if lake.exists(CASE, "tickets_clean", (MONTH, m))]
    months = [m[:7] for m in config.months] if config.months else settings.evaluation_months(stored)
    missing = sorted(set(months) - set(stored))
    if missing or not months:
        raise dg.Failure(f"months without stored tickets and labels: {', '.join(missing) or 'none chosen'}")
    labels = read_months(lake, "agent_labels", months).select("ticket_id", "category")
    tickets = read_months(lake, "tickets_clean", months).join(labels, on="ticket_id")
    classifiers = {v: load_classifier(registry, settings, version=v)[0] for v in versions}
    result = evaluate_versions(tickets, classifiers, {v: learnt_by(lake, v) for v in versions}, settings)
    lake.write(result.figures.with_columns(months=pl.lit(",".join(result.months))), CASE, "model_evaluation")
    verdict = result.comparison.describe() if result.comparison else f"v{version} alone"
    context.log.info(
        f"v{' vs v'.join(versions)} on {result.tickets:,} tickets of {', '.join(result.months)}: {verdict}"
    )
    bars = list(zip((f"v{v}" for v in result.figures["model_version"]), result.figures["accuracy"], strict=True))
    yield dg.MaterializeResult(
        metadata={
            "versions": ", ".join(f"v{v}" for v in versions),
            "months": ", ".join(result.months),
            "tickets": result.tickets,
            "left_out_learnt": result.left_out,
            "in_sample_risk": ", ".join(f"v{v}" for v in result.unknown) or "none: every version's tickets are known",
            "figures": table(result.figures, percent=RATES),
            **({"comparison": table(result.comparison_frame())} if result.comparison else {}),
            "verdict": verdict,
            "chart": dg.MetadataValue.md(bar_chart("accuracy on the same tickets", bars, label=pct)),
        }
    )
