"""Monthly routing by the champion (any stored month), its LLMOps checks, the teams' table and the human
validation queue, the confusion matrix."""

import dagster as dg

from assets.common import OWNERS, check_result, frame_schema, require_partitions, table
from assets.triage.model import CHAMPION_KEY
from assets.triage.partitions import monthly
from assets.triage.raw import CLEAN_KEY, LABELS_KEY
from lakehouse.common.display import bar_chart, pct
from lakehouse.common.registry import CHAMPION
from lakehouse.triage.pipeline import (
    CASE,
    MONTH,
    month_of,
    monthly_confusion,
    route_tickets,
    routed_months,
    routing_checks,
)
from lakehouse.triage.settings import TriageSettings
from resources import LakehouseResource, MlflowResource, SourcesResource

ROUTES_KEY = dg.AssetKey([CASE, "ticket_routes"])
CONFUSION_KEY = dg.AssetKey([CASE, "monthly_confusion"])


@dg.asset(
    key=ROUTES_KEY,
    deps=[CLEAN_KEY, CHAMPION_KEY],
    partitions_def=monthly,
    group_name=CASE,
    kinds={"onnx", "parquet"},
    owners=OWNERS[CASE],
    description=(
        "Every ticket of the month classified by the `champion`: category, confidence, route and reason. Above the "
        "champion's auto-route threshold (fitted on validation to `auto_precision_target`, never below "
        "`confidence_threshold`) to the category's team; otherwise, or when the ticket matches no known category "
        "(reason `out_of_scope`), to human validation."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "mean_confidence",
            asset=ROUTES_KEY,
            description="Mean confidence of the month >= `monitoring.min_mean_confidence` (seed: 0.75).",
        ),
        dg.AssetCheckSpec(
            "human_validation_rate",
            asset=ROUTES_KEY,
            description="Share sent to human validation <= `monitoring.max_human_validation_rate` (seed: 30 %).",
        ),
        dg.AssetCheckSpec(
            "category_mix_drift",
            asset=ROUTES_KEY,
            description=(
                "Predicted category mix vs the champion's training mix: PSI above `monitoring.max_mix_psi` alerts; "
                "chi-square p-value reported."
            ),
        ),
    ],
)
def ticket_routes(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource, sources: SourcesResource
) -> dg.MaterializeResult:
    from lakehouse.triage.model import load_classifier

    settings, lake = sources.settings(TriageSettings), lakehouse.lake
    require_partitions(monthly, [context.partition_key], TriageSettings)
    month = month_of(context.partition_key)
    classifier, version = load_classifier(mlflow.registry(lakehouse), settings, CHAMPION)
    routes = route_tickets(classifier, lake.read(CASE, "tickets_clean", (MONTH, month)), version, settings)
    lake.write(routes, CASE, "ticket_routes", (MONTH, month))
    checks = routing_checks(routes, lake.read(CASE, "training_mix", ("model_version", version)), settings)
    by_reason = routes.group_by("route", "reason").len("tickets").sort("route", "reason")
    return dg.MaterializeResult(
        check_results=[check_result(c) for c in checks],
        metadata={
            "dagster/row_count": routes.height,
            "dagster/column_schema": frame_schema(routes),
            "model_version": version,
            "auto_rate": f"{(routes['route'] == 'auto').mean():.1%}",
            "mean_confidence": round(float(routes["confidence"].mean()), 3),
            "decision_ms_per_ticket": round(float(routes["decision_ms"].max()), 2) if routes.height else None,
            "by_route": table(by_reason),
        },
    )


@dg.asset(
    key=[CASE, "published_routes"],
    deps=[ROUTES_KEY, LABELS_KEY],
    partitions_def=monthly,
    group_name=CASE,
    kinds={"sqlite"},
    owners=OWNERS[CASE],
    description=(
        "Auto-routed tickets upserted into the teams' assignment table, the others into the human validation queue "
        "(ops SQLite) with their reason, and the agents' validations once given; idempotent by ticket id."
    ),
)
def published_routes(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    from lakehouse.triage.queues import publish

    routed = routed_months(lakehouse.lake, [month_of(context.partition_key)])
    counts = publish(lakehouse.paths.ops_db, routed.routes, routed.labels)
    return dg.MaterializeResult(metadata={**counts, "ops_db": dg.MetadataValue.path(str(lakehouse.paths.ops_db))})


@dg.asset(
    key=CONFUSION_KEY,
    deps=[ROUTES_KEY, LABELS_KEY],
    partitions_def=monthly,
    group_name=CASE,
    kinds={"polars", "matplotlib"},
    owners=OWNERS[CASE],
    description=(
        "The month's confusion matrix (agent label vs predicted category), per-category recall and precision as "
        "tables, the weakest categories as a chart, the whole matrix as a PNG in the reports folder."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "category_recall",
            asset=CONFUSION_KEY,
            description=(
                "Recall of every category with >= `monitoring.min_category_support` tickets in the month >= "
                "`monitoring.min_category_recall`."
            ),
        )
    ],
)
def monthly_confusion_matrix(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, sources: SourcesResource
) -> dg.MaterializeResult:
    from lakehouse.triage.monitoring import plot_confusion

    settings, lake, month = sources.settings(TriageSettings), lakehouse.lake, month_of(context.partition_key)
    joined = routed_months(lake, [month]).labelled()
    if joined.is_empty():
        raise dg.Failure(f"no agent label yet for {month}")
    result = monthly_confusion(joined, settings)
    lake.write(result.frame(), CASE, "monthly_confusion", (MONTH, month))
    png = plot_confusion(
        result.categories,
        result.matrix,
        lakehouse.paths.reports / f"triage_confusion_{month}.png",
        f"Triage {month}: agent label vs predicted",
    )
    large = len(result.categories) > 30
    weakest = [
        (r["category"], r["recall"])
        for r in result.stats.drop_nans("recall").sort("recall").head(5).iter_rows(named=True)
    ]
    return dg.MaterializeResult(
        check_results=[check_result(result.check)],
        metadata={
            "dagster/row_count": joined.height,
            "accuracy": f"{result.accuracy:.1%}",
            "auto_precision": f"{result.auto_precision:.1%}"
            if result.auto_precision is not None
            else "nothing auto-routed",
            "per_category": table(result.stats),
            **({} if large else {"confusion_matrix": table(result.frame())}),
            "chart": dg.MetadataValue.md(bar_chart("lowest recall by category", weakest, label=pct)),
            "chart_path": dg.MetadataValue.path(str(png)),
        },
    )
