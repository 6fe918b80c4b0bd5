"""The triage evaluation report (the months the settings pick) and the ROI report (every routed month)."""

import dagster as dg

from assets.common import OWNERS, REPORT, number, rate, table
from assets.triage.raw import LABELS_KEY
from assets.triage.routing import ROUTES_KEY
from lakehouse.common.display import bar_chart, money, pct
from lakehouse.triage.lifecycle import RATES
from lakehouse.triage.pipeline import CASE, evaluation_report, published, roi, routed_months
from lakehouse.triage.roi import report_table
from lakehouse.triage.settings import TriageSettings
from resources import LakehouseResource, SourcesResource


@dg.asset(
    key=[CASE, "evaluation_report"],
    deps=[ROUTES_KEY, LABELS_KEY],
    tags=REPORT,
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    output_required=False,
    description=(
        "Quality of the routed tickets of the months `evaluation` picks (dates, or a duration back from the latest "
        "routed month) against the agents' labels: accuracy, macro-F1, accuracy on known categories, out-of-scope "
        "recall, auto-routed share and its precision, per route and reason and per model version, shadow routes "
        "(a refused first model) included and marked. Skipped while no month is routed."
    ),
)
def triage_evaluation_report(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, sources: SourcesResource):
    import polars as pl

    settings, lake = sources.settings(TriageSettings), lakehouse.lake
    routed = routed_months(lake)
    if routed is None:
        context.log.warning("no evaluation report: no month is routed yet")
        return
    result = evaluation_report(routed.routes, routed.labels, settings)
    m, shadow = result.metrics, result.shadow_versions
    versions = result.by_model["model_version"].to_list()
    row = {**m, "months": ",".join(result.months), "model_versions": ",".join(versions), "shadow": ",".join(shadow)}
    lake.write(pl.DataFrame([row]), CASE, "evaluation_report")
    context.log.info(
        f"{', '.join(result.months)}: accuracy {m['accuracy']:.3f}, "
        f"auto {m['auto_rate']:.1%} at {m['auto_precision']:.1%}"
    )
    note = (
        f"; routed in shadow by {', '.join(f'v{v}' for v in shadow)} (not promoted: nothing was published)"
        if shadow
        else ""
    )
    yield dg.MaterializeResult(
        metadata={
            "months": f"{result.months[0]} .. {result.months[-1]}",
            "tickets": m["tickets"],
            "models": ", ".join(f"v{v}{' (shadow)' if v in shadow else ''}" for v in versions),
            "accuracy": rate(m["accuracy"]),
            "accuracy_without_out_of_scope_rule": rate(m["accuracy_without_out_of_scope_rule"]),
            "macro_f1": number(m["macro_f1"]),
            "in_scope_accuracy": rate(m["in_scope_accuracy"]),
            "out_of_scope_recall": rate(m["out_of_scope_recall"]) if _measured(m["out_of_scope_recall"]) else "n/a",
            "auto_rate": rate(m["auto_rate"]),
            "auto_precision": rate(m["auto_precision"]),
            "reading": _reading(m) + note,
            "chart": dg.MetadataValue.md(
                bar_chart(
                    "quality of the routed tickets",
                    [
                        ("accuracy", m["accuracy"]),
                        ("known accuracy", m["in_scope_accuracy"]),
                        *([("out-of-scope", m["out_of_scope_recall"])] if _measured(m["out_of_scope_recall"]) else []),
                        ("auto share", m["auto_rate"]),
                        ("auto precision", _or_zero(m["auto_precision"])),
                    ],
                    label=pct,
                )
            ),
            "by_model": table(result.by_model, percent=RATES),
            "by_route_and_reason": table(result.by_reason),
        }
    )


def _measured(x: float) -> bool:
    return x == x


def _reading(m: dict) -> str:
    """The report in a sentence; the out-of-scope figures only where they mean something."""
    text = (
        f"{pct(m['auto_rate'])} of the tickets went straight to a team, {pct(m['auto_precision'])} of them "
        f"to the right one; {pct(m['accuracy'])} of all suggested categories were right"
    )
    if _measured(m["out_of_scope_recall"]):
        text += (
            f", and {pct(m['out_of_scope_recall'])} of the tickets the agents labelled out of scope were recognised "
            "as such"
        )
    without = m["accuracy_without_out_of_scope_rule"]
    if _measured(without) and abs(without - m["accuracy"]) > 1e-12:
        text += f" ({pct(without)} with the most probable category alone, without the out-of-scope rule)"
    return text + "."


def _or_zero(x: float) -> float:
    """A rate with nothing to measure (no out-of-scope ticket, nothing auto-routed) drawn as an empty bar."""
    return x if x == x else 0.0


@dg.asset(
    key=[CASE, "roi_report"],
    deps=[ROUTES_KEY, LABELS_KEY],
    tags=REPORT,
    group_name=CASE,
    kinds={"polars"},
    owners=OWNERS[CASE],
    output_required=False,
    description=(
        "Auto-triage rate, precision of auto-routed tickets, time to triage, agent FTE freed and ROI over every month "
        "a champion routed, beside the seed's figures (cost assumptions: `economics` in the case's settings; the "
        "report names the defaults in use). Shadow routes reached no team and do not count; skipped while there is "
        "no champion's route."
    ),
)
def roi_report(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, sources: SourcesResource):
    import polars as pl

    settings, lake = sources.settings(TriageSettings), lakehouse.lake
    routed = routed_months(lake)
    routes = published(routed.routes) if routed is not None else None
    if routes is None or routes.is_empty():
        context.log.warning("no ROI report: no month has been routed by a champion yet (shadow routes reach no team)")
        return
    result = roi(routes, routed.labels, settings)
    row = {k: (",".join(v) if isinstance(v, list) else v) for k, v in result.to_dict().items()}
    lake.write(pl.DataFrame([row]), CASE, "roi_report")
    context.log.info(
        f"auto {result.auto_triage_rate:.1%} at precision {result.auto_precision:.1%}; ROI {result.roi_multiple:.1f}x"
    )
    yield dg.MaterializeResult(
        metadata={
            "months": f"{routes['month'].min()} .. {routes['month'].max()}",
            "auto_triage_rate": rate(result.auto_triage_rate),
            "auto_precision": rate(result.auto_precision),
            "fte_freed": number(result.fte_freed, 2),
            "annual_value": money(result.annual_value, result.currency),
            "roi_multiple": number(result.roi_multiple, 1),
            "time_to_triage_mean_min": number(result.time_to_triage_mean_min, 1),
            "default_figures": ", ".join(result.default_figures) or "none",
            "reading": (
                f"{pct(result.auto_triage_rate)} of {result.tickets:,} tickets were routed without an agent, freeing "
                f"{result.fte_freed:.2f} agents; effort scaled to {settings.economics.tickets_per_month:,} "
                "tickets a month"
                + (
                    f"; the seed's default figures were used for {', '.join(result.default_figures)}"
                    if result.default_figures
                    else ""
                )
            ),
            "chart": dg.MetadataValue.md(
                bar_chart(
                    "triage agents before and after (FTE)",
                    [
                        ("before ML", result.triage_fte_before),
                        ("after ML", result.triage_fte_after),
                    ],
                    label=lambda v: f"{v:.2f}",
                )
            ),
            "report": table(report_table(result, routes["auto_threshold"].unique().to_list())),
        }
    )
