"""Monthly routing (any stored month) by the champion, or in shadow by the latest challenger while there is no
champion; its LLMOps checks; the teams' table and the human validation queue (never from shadow routes); the
confusion matrix."""

import dagster as dg

from assets.common import OWNERS, check_result, frame_schema, number, rate, require_partitions, table
from assets.triage.model import CHAMPION_KEY
from assets.triage.partitions import monthly
from assets.triage.raw import CLEAN_KEY, LABELS_KEY
from lakehouse.common.display import bar_chart, pct
from lakehouse.common.promotion import serving_choice
from lakehouse.triage.pipeline import (
    CASE,
    MONTH,
    month_of,
    monthly_confusion,
    published,
    route_tickets,
    routed_months,
    routing_checks,
)
from lakehouse.triage.settings import TriageSettings
from resources import LakehouseResource, MlflowResource, SourcesResource

ROUTES_KEY = dg.AssetKey([CASE, "ticket_routes"])
CONFUSION_KEY = dg.AssetKey([CASE, "monthly_confusion"])


@dg.multi_asset(
    name="triage__ticket_routes",
    specs=[
        dg.AssetSpec(
            ROUTES_KEY,
            deps=[CLEAN_KEY, CHAMPION_KEY],
            group_name=CASE,
            kinds={"onnx", "parquet"},
            owners=OWNERS[CASE],
            skippable=True,
            description=(
                "Every ticket of the month classified by the `champion`: category, confidence, route and reason. "
                "Above the champion's auto-route threshold (fitted on validation to `auto_precision_target`, never "
                "below `confidence_threshold`) to the category's team; otherwise, or when the ticket matches no known "
                "category (reason `out_of_scope`), to human validation. With no champion yet, the latest challenger "
                "routes in shadow (`shadow` true, `model_version`): evaluated, never published. With no model at "
                "all, the month is skipped."
            ),
        )
    ],
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
                "Predicted category mix vs the routing model's training mix: PSI above `monitoring.max_mix_psi` "
                "alerts; chi-square p-value reported."
            ),
        ),
    ],
    partitions_def=monthly,
    can_subset=True,
)
def ticket_routes(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource, sources: SourcesResource
):
    from lakehouse.triage.registered import load_classifier

    settings, lake = sources.settings(TriageSettings), lakehouse.lake
    require_partitions(monthly, [context.partition_key], TriageSettings)
    month, registry = month_of(context.partition_key), mlflow.registry(lakehouse)
    choice = serving_choice(registry, settings.registered_model_name)
    if choice is None:
        context.log.warning(
            f"{month} not routed: no version of {settings.registered_model_name} is registered yet "
            "(materialize triage/model first)"
        )
        return
    classifier, version = load_classifier(registry, settings, version=choice.version)
    routes = route_tickets(
        classifier, lake.read(CASE, "tickets_clean", (MONTH, month)), version, settings, shadow=choice.shadow
    )
    lake.write(routes, CASE, "ticket_routes", (MONTH, month))
    if choice.shadow:
        context.log.warning(f"{month} routed in shadow by v{version}, never published: {choice.note}")
    selected = {key.name for key in context.selected_asset_check_keys}
    for outcome in routing_checks(routes, lake.read(CASE, "training_mix", ("model_version", version)), settings):
        if outcome.name in selected:
            yield check_result(outcome, ROUTES_KEY)
    yield dg.MaterializeResult(
        asset_key=ROUTES_KEY,
        metadata={
            "dagster/row_count": routes.height,
            "dagster/column_schema": frame_schema(routes),
            "model": choice.label,
            "model_version": version,
            "shadow": choice.shadow,
            **({"not_promoted_because": choice.note} if choice.shadow else {}),
            "auto_rate": rate((routes["route"] == "auto").mean()),
            "mean_confidence": number(routes["confidence"].mean()),
            "decision_ms_per_ticket": number(routes["decision_ms"].max(), 2),
            "by_route": table(routes.group_by("route", "reason").len("tickets").sort("route", "reason")),
        },
    )


@dg.asset(
    key=[CASE, "published_routes"],
    deps=[ROUTES_KEY, LABELS_KEY],
    partitions_def=monthly,
    group_name=CASE,
    kinds={"sqlite"},
    owners=OWNERS[CASE],
    output_required=False,
    description=(
        "Auto-routed tickets upserted into the teams' assignment table, the others into the human validation queue "
        "(ops SQLite) with their reason, and the agents' validations once given; idempotent by ticket id. Routes "
        "made in shadow (no champion yet) are never published: the month is skipped."
    ),
)
def published_routes(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):
    from lakehouse.triage.queues import publish

    month = month_of(context.partition_key)
    routed = routed_months(lakehouse.lake, [month])
    if routed is None:
        context.log.warning(f"{month} not published: the month has no routes (no model was registered to route it)")
        return
    decided = published(routed.routes)
    if decided.height < routed.routes.height:
        versions = ", ".join(f"v{v}" for v in routed.routes["model_version"].unique().sort())
        context.log.warning(
            f"{month} not published: its routes were made in shadow by {versions}, which no gate has promoted; "
            "the teams and the validation queue only get a champion's routes"
        )
        return
    counts = publish(lakehouse.paths.ops_db, decided, routed.labels)
    yield dg.MaterializeResult(metadata={**counts, "ops_db": dg.MetadataValue.path(str(lakehouse.paths.ops_db))})


@dg.multi_asset(
    name="triage__monthly_confusion",
    specs=[
        dg.AssetSpec(
            CONFUSION_KEY,
            deps=[ROUTES_KEY, LABELS_KEY],
            group_name=CASE,
            kinds={"polars", "matplotlib"},
            owners=OWNERS[CASE],
            skippable=True,
            description=(
                "The month's confusion matrix (agent label vs predicted category), per-category recall and "
                "precision as tables, the weakest categories as a chart, the whole matrix as a PNG in the reports "
                "folder; of the routes as they are, shadow ones included (said in the metadata)."
            ),
        )
    ],
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
    partitions_def=monthly,
    can_subset=True,
)
def monthly_confusion_matrix(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, sources: SourcesResource):
    from lakehouse.triage.monitoring import plot_confusion

    settings, lake, month = sources.settings(TriageSettings), lakehouse.lake, month_of(context.partition_key)
    routed = routed_months(lake, [month])
    if routed is None:
        context.log.warning(f"no confusion matrix for {month}: the month has no routes")
        return
    joined = routed.labelled()
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
    weakest = [
        (r["category"], r["recall"])
        for r in result.stats.drop_nans("recall").sort("recall").head(5).iter_rows(named=True)
    ]
    if context.selected_asset_check_keys:
        yield check_result(result.check, CONFUSION_KEY)
    shadow = routed.routes.height - published(routed.routes).height
    yield dg.MaterializeResult(
        asset_key=CONFUSION_KEY,
        metadata={
            "dagster/row_count": joined.height,
            "routes": f"{shadow:,} made in shadow (not promoted)" if shadow else "the champion's",
            "accuracy": rate(result.accuracy),
            "auto_precision": rate(result.auto_precision) if result.auto_precision is not None else "nothing routed",
            "per_category": table(result.stats),
            **({} if len(result.categories) > 30 else {"confusion_matrix": table(result.frame())}),
            "chart": dg.MetadataValue.md(bar_chart("lowest recall by category", weakest, label=pct)),
            "chart_path": dg.MetadataValue.path(str(png)),
        },
    )
