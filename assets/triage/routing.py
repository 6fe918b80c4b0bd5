"""Monthly routing by the champion, its LLMOps checks, the teams' and validation queues, the confusion matrix."""


import time

import dagster as dg
import numpy as np
import polars as pl

from assets.common import OWNERS, frame_schema, markdown_table, png_markdown
from assets.triage.model import CHAMPION_KEY
from assets.triage.partitions import monthly
from assets.triage.tickets import CLEAN_KEY, LABELS_KEY, month_partition
from lakehouse.common.registry import CHAMPION
from lakehouse.triage.config import CASE, SETTINGS, WorldConfig
from lakehouse.triage.data import team_of
from lakehouse.triage.model import load_classifier, route
from lakehouse.triage.monitoring import (
    category_recall_check,
    confusion,
    confusion_markdown,
    human_validation_rate_check,
    mean_confidence_check,
    mix_drift_check,
    per_category,
    plot_confusion,
)
from lakehouse.triage.queues import publish
from resources import LakehouseResource, MlflowResource

ROUTES_KEY = dg.AssetKey([CASE, "ticket_routes"])
CONFUSION_KEY = dg.AssetKey([CASE, "monthly_confusion"])


def _check_result(outcome) -> dg.AssetCheckResult:
    metadata = {k: (dg.MetadataValue.md(markdown_table(v)) if isinstance(v, pl.DataFrame) else v) for k, v in outcome.metadata.items()}
    return dg.AssetCheckResult(
        check_name=outcome.name, passed=outcome.passed, severity=dg.AssetCheckSeverity.WARN,
        description=outcome.description, metadata=metadata,
    )


@dg.asset(
    key=ROUTES_KEY,
    deps=[CLEAN_KEY, CHAMPION_KEY],
    partitions_def=monthly,
    group_name=CASE,
    kinds={"pytorch", "parquet"},
    owners=OWNERS[CASE],
    description=(
        f"Every ticket of the month classified by the `champion`: category, confidence, and the route: above "
        f"{SETTINGS.confidence_threshold} to the category's team, otherwise to human validation."
    ),
    check_specs=[
        dg.AssetCheckSpec("mean_confidence", asset=ROUTES_KEY, description=f"Mean confidence of the month >= {SETTINGS.min_mean_confidence} (seed alert)."),
        dg.AssetCheckSpec("human_validation_rate", asset=ROUTES_KEY, description=f"Share sent to human validation <= {SETTINGS.max_human_validation_rate:.0%} (seed alert)."),
        dg.AssetCheckSpec(
            "category_mix_drift",
            asset=ROUTES_KEY,
            description=f"Predicted category mix vs the champion's training mix: PSI above {SETTINGS.max_mix_psi} alerts; chi-square p-value reported.",
        ),
    ],
)
def ticket_routes(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    month = month_partition(context.partition_key)
    tickets = lakehouse.lake.read(CASE, "tickets_clean", month)
    classifier, version = load_classifier(mlflow.registry(lakehouse), SETTINGS, CHAMPION)
    started = time.perf_counter()
    predicted = classifier.predict(tickets["text"].to_list())
    seconds = time.perf_counter() - started
    teams = team_of(WorldConfig.from_env().categories)
    routes = tickets.select("ticket_id", "month", "created_at").with_columns(
        category=predicted["category"],
        confidence=predicted["confidence"],
        route=pl.Series(route(predicted["confidence"].to_numpy(), SETTINGS.confidence_threshold), dtype=pl.String),
        model_version=pl.lit(version),
        decision_ms=pl.lit(1000 * seconds / max(1, tickets.height)),
    )
    routes = routes.with_columns(team=pl.col("category").replace_strict(teams, default=pl.col("category")))
    lakehouse.lake.write(routes, CASE, "ticket_routes", month)
    reference = lakehouse.lake.read(CASE, "training_mix", ("model_version", version))
    checks = [
        mean_confidence_check(routes, SETTINGS),
        human_validation_rate_check(routes, SETTINGS),
        mix_drift_check(routes["category"], dict(zip(reference["category"], reference["share"])), SETTINGS),
    ]
    by_route = routes.group_by("route").agg(tickets=pl.len(), mean_confidence=pl.col("confidence").mean()).sort("route")
    return dg.MaterializeResult(
        check_results=[_check_result(c) for c in checks],
        metadata={
            "dagster/row_count": routes.height,
            "dagster/column_schema": frame_schema(routes),
            "model_version": version,
            "auto_rate": float((routes["route"] == "auto").mean()),
            "mean_confidence": float(routes["confidence"].mean()),
            "tickets_per_second": routes.height / seconds if seconds else None,
            "by_route": dg.MetadataValue.md(markdown_table(by_route)),
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
        "(ops SQLite), with the agents' validations once given; idempotent by ticket id."
    ),
)
def published_routes(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    month = month_partition(context.partition_key)
    counts = publish(lakehouse.paths.ops_db, lakehouse.lake.read(CASE, "ticket_routes", month), lakehouse.lake.read(CASE, "agent_labels", month))
    return dg.MaterializeResult(metadata={**counts, "ops_db": dg.MetadataValue.path(str(lakehouse.paths.ops_db))})


@dg.asset(
    key=CONFUSION_KEY,
    deps=[ROUTES_KEY, LABELS_KEY],
    partitions_def=monthly,
    group_name=CASE,
    kinds={"polars", "matplotlib"},
    owners=OWNERS[CASE],
    description="The month's confusion matrix (agent label vs predicted category), per-category recall and precision, as Markdown and PNG.",
    check_specs=[
        dg.AssetCheckSpec(
            "category_recall",
            asset=CONFUSION_KEY,
            description=f"Recall of every category with >= {SETTINGS.min_category_support} tickets in the month >= {SETTINGS.min_category_recall}.",
        )
    ],
)
def monthly_confusion(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    month = month_partition(context.partition_key)
    routes = lakehouse.lake.read(CASE, "ticket_routes", month)
    labels = lakehouse.lake.read(CASE, "agent_labels", month).select("ticket_id", pl.col("category").alias("agent_category"))
    joined = routes.join(labels, on="ticket_id")
    if joined.is_empty():
        raise dg.Failure(f"no agent label yet for {month[1]}")
    cats, matrix = confusion(joined["agent_category"], joined["category"])
    stats = per_category(cats, matrix)
    lakehouse.lake.write(
        pl.DataFrame({"agent_category": cats, **{c: matrix[:, j] for j, c in enumerate(cats)}}), CASE, "monthly_confusion", month
    )
    png = plot_confusion(cats, matrix, lakehouse.paths.reports / f"triage_confusion_{month[1]}.png", f"Triage {month[1]}: agent label vs predicted")
    auto = joined.filter(pl.col("route") == "auto")
    return dg.MaterializeResult(
        check_results=[_check_result(category_recall_check(stats, SETTINGS))],
        metadata={
            "dagster/row_count": joined.height,
            "accuracy": float(np.trace(matrix) / matrix.sum()),
            "auto_precision": float((auto["category"] == auto["agent_category"]).mean()) if auto.height else None,
            "per_category": dg.MetadataValue.md(markdown_table(stats)),
            "confusion_matrix": dg.MetadataValue.md(confusion_markdown(cats, matrix)),
            "chart": png_markdown(png, f"confusion {month[1]}"),
            "chart_path": dg.MetadataValue.path(str(png)),
        },
    )
