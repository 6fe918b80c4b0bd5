"""The triage evaluation report (the months the settings pick) and the ROI report (every routed month)."""

import dagster as dg

from assets.common import OWNERS, markdown_table
from assets.triage.raw import LABELS_KEY
from assets.triage.routing import ROUTES_KEY
from lakehouse.triage.pipeline import CASE, MONTH, evaluation_report, read_months, roi
from lakehouse.triage.roi import report_markdown
from lakehouse.triage.settings import TriageSettings
from resources import LakehouseResource


@dg.asset(
    key=[CASE, "evaluation_report"],
    deps=[ROUTES_KEY, LABELS_KEY],
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    description=(
        "Quality of the routed tickets of the months `evaluation` picks (dates, or a duration back from the latest routed month) "
        "against the agents' labels: accuracy, macro-F1, accuracy on known categories, out-of-scope recall, auto-routed share and "
        "its precision, per route and reason."
    ),
)
def triage_evaluation_report(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    import polars as pl

    settings, lake = TriageSettings(), lakehouse.lake
    if not lake.partitions(CASE, "ticket_routes", MONTH):
        return dg.MaterializeResult(metadata={"months": "none routed yet"})
    result = evaluation_report(read_months(lake, "ticket_routes"), read_months(lake, "agent_labels"), settings)
    m = result.metrics
    lake.write(pl.DataFrame([{**m, "months": ",".join(result.months)}]), CASE, "evaluation_report")
    context.log.info(f"{', '.join(result.months)}: accuracy {m['accuracy']:.3f}, auto {m['auto_rate']:.1%} at {m['auto_precision']:.1%}")
    pct = lambda x: f"{x:.1%}" if x == x else "-"  # noqa: E731
    return dg.MaterializeResult(
        metadata={
            "months": f"{result.months[0]} .. {result.months[-1]}",
            "tickets": m["tickets"],
            "accuracy": pct(m["accuracy"]),
            "macro_f1": round(m["macro_f1"], 4),
            "in_scope_accuracy": pct(m["in_scope_accuracy"]),
            "out_of_scope_recall": pct(m["out_of_scope_recall"]),
            "auto_rate": pct(m["auto_rate"]),
            "auto_precision": pct(m["auto_precision"]),
            "by_route_and_reason": dg.MetadataValue.md(markdown_table(result.by_reason)),
        }
    )


@dg.asset(
    key=[CASE, "roi_report"],
    deps=[ROUTES_KEY, LABELS_KEY],
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    description=(
        "Auto-triage rate, precision of auto-routed tickets, time to triage, agent FTE freed and ROI over every routed month, "
        "beside the seed's figures (cost assumptions: `economics` in the case's settings; the report names the defaults in use)."
    ),
)
def roi_report(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    import polars as pl

    settings, lake = TriageSettings(), lakehouse.lake
    if not lake.partitions(CASE, "ticket_routes", MONTH):
        return dg.MaterializeResult(metadata={"months": "none routed yet"})
    routes = read_months(lake, "ticket_routes")
    result = roi(routes, read_months(lake, "agent_labels"), settings)
    row = {k: (",".join(v) if isinstance(v, list) else v) for k, v in result.to_dict().items()}
    lake.write(pl.DataFrame([row]), CASE, "roi_report")
    context.log.info(f"auto {result.auto_triage_rate:.1%} at precision {result.auto_precision:.1%}; ROI {result.roi_multiple:.1f}x")
    return dg.MaterializeResult(
        metadata={
            "months": f"{routes['month'].min()} .. {routes['month'].max()}",
            "auto_triage_rate": f"{result.auto_triage_rate:.1%}",
            "auto_precision": f"{result.auto_precision:.1%}",
            "fte_freed": round(result.fte_freed, 2),
            "annual_value": f"{result.annual_value:,.0f} {result.currency}",
            "roi_multiple": round(result.roi_multiple, 1),
            "time_to_triage_mean_min": round(result.time_to_triage_mean_min, 1),
            "default_figures": ", ".join(result.default_figures) or "none",
            "report": dg.MetadataValue.md(report_markdown(result, routes["auto_threshold"].unique().to_list(), settings.economics.tickets_per_month)),
        }
    )
