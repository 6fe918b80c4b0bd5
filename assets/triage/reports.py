"""The ROI report of the triage case, from every routed month."""


import dagster as dg
import polars as pl

from assets.common import OWNERS
from assets.triage.model import read_months
from assets.triage.routing import ROUTES_KEY
from assets.triage.tickets import LABELS_KEY
from lakehouse.triage.config import CASE, ROI, SEED_REFERENCE
from lakehouse.triage.roi import compute_roi, report_markdown
from resources import LakehouseResource


@dg.asset(
    key=[CASE, "roi_report"],
    deps=[ROUTES_KEY, LABELS_KEY],
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    description=(
        "Auto-triage rate, precision of auto-routed tickets, time to triage, agent FTE freed and ROI over every routed month, "
        "beside the seed's figures (cost assumptions in lakehouse/triage/config.py)."
    ),
)
def roi_report(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    routes = read_months(lakehouse, "ticket_routes")
    labels = read_months(lakehouse, "agent_labels").select("ticket_id", pl.col("category").alias("agent_category"))
    routed = routes.join(labels, on="ticket_id")
    decision_seconds = float((routed["decision_ms"] / 1000).sum())
    result = compute_roi(routed, decision_seconds, ROI)
    lakehouse.lake.write(pl.DataFrame([result.to_dict()]), CASE, "roi_report")
    context.log.info(f"auto {result.auto_triage_rate:.1%} at precision {result.auto_precision:.1%}; ROI {result.roi_multiple:.1f}x")
    return dg.MaterializeResult(
        metadata={
            "months": f"{routes['month'].min()} .. {routes['month'].max()}",
            "auto_triage_rate": result.auto_triage_rate,
            "auto_precision": result.auto_precision,
            "fte_freed": result.fte_freed,
            "roi_multiple": result.roi_multiple,
            "time_to_triage_mean_min": result.time_to_triage_mean_min,
            "report": dg.MetadataValue.md(report_markdown(result, SEED_REFERENCE)),
        }
    )
