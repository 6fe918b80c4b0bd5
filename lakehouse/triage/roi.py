"""The triage ROI report: measured routing rates turned into agent time and money, per the seed.

Measured on the routed months: the auto-triage rate, the precision of auto-routed tickets
(against the agents' labels) and the model's decision time. Turned into effort with the
assumptions of `TriageEconomics` (settings): before ML, `baseline_triage_agents` agents triaged
every ticket; after, agents only validate the queued tickets and bounce the misrouted ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import polars as pl

from lakehouse.triage.model import AUTO
from lakehouse.triage.settings import TriageEconomics

# The seed's own figures, shown beside ours in the report.
SEED_REFERENCE = {
    "auto_triage_rate": 0.78,
    "auto_precision": 0.94,
    "time_to_triage_s": 30.0,
    "fte_freed": 2.2,
    "roi": 8.0,
}


@dataclass(frozen=True)
class RoiResult:
    tickets: int
    auto_triage_rate: float
    auto_precision: float
    decision_ms_per_ticket: float
    time_to_triage_auto_s: float
    time_to_triage_mean_min: float
    baseline_time_to_triage_min: float
    triage_error_rate: float
    baseline_error_rate: float
    triage_fte_before: float
    triage_fte_after: float
    fte_freed: float
    annual_value: float
    system_annual_cost: float
    currency: str
    roi_multiple: float  # annual value of the freed time / annual system cost (the seed's "8x")
    default_figures: list[str]  # cost figures nobody set: the seed's defaults were used

    def to_dict(self) -> dict:
        return asdict(self)


def compute_roi(routed: pl.DataFrame, decision_seconds: float, assumptions: TriageEconomics) -> RoiResult:
    """`routed`: one row per routed ticket with `route`, `category` (predicted) and `agent_category`."""
    if routed.is_empty():
        raise ValueError("no routed ticket with an agent label yet")
    a = assumptions
    auto = routed.filter(pl.col("route") == AUTO)
    auto_rate = auto.height / routed.height
    precision = float((auto["category"] == auto["agent_category"]).mean()) if auto.height else float("nan")
    misrouted_share = auto_rate * (1 - precision) if auto.height else 0.0
    per_ticket_s = decision_seconds / routed.height
    mean_min = auto_rate * per_ticket_s / 60 + (1 - auto_rate) * a.queue_wait_minutes
    # Effort at the seed's volume: before, every ticket was triaged by hand.
    monthly = a.tickets_per_month
    fte_before = a.baseline_triage_agents
    minutes_after = monthly * (
        (1 - auto_rate) * a.human_validation_minutes + misrouted_share * a.misroute_rework_minutes
    )
    fte_after = minutes_after / 60 / a.agent_hours_per_month
    freed = fte_before - fte_after
    value = freed * a.agent_annual_cost
    return RoiResult(
        tickets=routed.height,
        auto_triage_rate=auto_rate,
        auto_precision=precision,
        decision_ms_per_ticket=1000 * per_ticket_s,
        time_to_triage_auto_s=per_ticket_s,
        time_to_triage_mean_min=mean_min,
        baseline_time_to_triage_min=a.baseline_triage_minutes,
        triage_error_rate=misrouted_share,
        baseline_error_rate=a.baseline_error_rate,
        triage_fte_before=fte_before,
        triage_fte_after=fte_after,
        fte_freed=freed,
        annual_value=value,
        system_annual_cost=a.system_annual_cost,
        currency=a.currency,
        roi_multiple=value / a.system_annual_cost,
        default_figures=a.defaults_used,
    )


def report_table(r: RoiResult, thresholds: list[float], seed: dict = SEED_REFERENCE) -> pl.DataFrame:
    """The report's rows: metric, measured (formatted, in the case's currency), the seed's figure;
    `thresholds`: the auto-route thresholds of the models that routed the tickets."""
    low, high = min(thresholds), max(thresholds)
    rule = f"confidence > {low:.3f}" if low == high else f"confidence > the model's threshold, {low:.3f} to {high:.3f}"
    rows = [
        (f"auto-triage rate ({rule})", f"{r.auto_triage_rate:.1%}", f"{seed['auto_triage_rate']:.0%}"),
        ("precision of auto-routed tickets", f"{r.auto_precision:.1%}", f"{seed['auto_precision']:.0%}"),
        (
            "time to triage, auto-routed",
            f"{r.time_to_triage_auto_s * 1000:.0f} ms (model decision)",
            f"{seed['time_to_triage_s']:.0f} s",
        ),
        (
            "time to triage, mean over all tickets",
            f"{r.time_to_triage_mean_min:.1f} min (queued tickets wait like before)",
            "-",
        ),
        ("time to triage before ML", f"{r.baseline_time_to_triage_min:.0f} min", "45 min"),
        (
            "wrong team (misrouted share of all tickets)",
            f"{r.triage_error_rate:.1%}",
            f"{r.baseline_error_rate:.0%} before ML",
        ),
        ("triage FTE before -> after", f"{r.triage_fte_before:.1f} -> {r.triage_fte_after:.2f}", "3 -> 0.8"),
        ("agent FTE freed", f"{r.fte_freed:.2f}", f"{seed['fte_freed']}"),
        ("annual value of freed time", f"{r.annual_value:,.0f} {r.currency}", "-"),
        ("annual system cost (assumption)", f"{r.system_annual_cost:,.0f} {r.currency}", "-"),
        ("ROI (value / annual system cost)", f"{r.roi_multiple:.1f}x", f"{seed['roi']:.0f}x"),
    ]
    return pl.DataFrame(rows, schema=["metric", "measured", "seed"], orient="row")
